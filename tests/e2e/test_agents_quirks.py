"""The daemon on backend "agents" against an independent server with other servers' quirks.

``tests/agents_quirky.py`` is written from the official SDK's types, not from the worker or its
simulator. For each quirk, a few sessions x turns x calls (one failing call a turn) run to the
end, and the server's own records must show: every call answered exactly once, each turn in one
events request of its own, nothing answered that was not asked, every session idle, failures as
``success: false``.
"""

from __future__ import annotations

import anyio
import pytest

from tests.agents_quirky import QUIRKS, QuirkyAgents
from tests.conftest import make_settings, wait_for
from worker.daemon import Worker
from worker.handlers.registry import Registry

pytestmark = pytest.mark.e2e

SESSIONS, TURNS = 4, 4
# nap: handlers still running when the worker checks whether the turn still waits for them.
TURN = [("add", {"a": 1, "b": 2}), ("nap", {"seconds": 0.25}), ("boom", {})]


def quirky_worker(api: QuirkyAgents, sessions: list[str], *, discover: bool = False) -> Worker:
    watch = {"sessions": sessions, "active_poll_interval_s": 0.05, "store": "memory",
             "cancel_check_interval_s": 0.05,
             "min_idle_poll_interval_s": 0.2, "idle_poll_interval_s": 0.5}
    if discover:
        watch |= {"discover": True, "agents": ["agent_quirky"], "discover_interval_s": 0.2}
    settings = make_settings(
        api={"backend": "agents", "base_url": api.base_url, "max_requests_per_s": 0,
             "stream_idle_timeout_s": 1.0},
        watch=watch, tools={"modules": ["tests.handlers.sample"]}, server={"enabled": False},
    )
    return Worker(settings, Registry.from_modules(settings.tools.modules))


async def serve(api: QuirkyAgents, *, batches: int = 1) -> None:
    """Run the worker until every session of every batch is idle; with ``listing``, the
    sessions are found by discovery, the second batch after the first was answered."""
    discover = "listing" in api.quirks
    sessions = [api.create_session([TURN] * TURNS) for _ in range(SESSIONS)]
    worker = quirky_worker(api, [] if discover else sessions, discover=discover)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        for batch in range(batches):
            if batch:
                sessions += [api.create_session([TURN] * TURNS) for _ in range(SESSIONS)]
            await wait_for(api.all_idle, timeout_s=20,
                           what=f"every session of batch {batch + 1} idle: {progress(api)}")
        worker.stop()


def progress(api: QuirkyAgents) -> str:
    return ", ".join(f"{s.id} {s.status} {len(s.turns)} turns {len(s.script)} left"
                     for s in api.sessions.values())


def check_each_call_answered_once(api: QuirkyAgents) -> None:
    assert api.all_idle()
    assert api.bad_headers == 0
    assert api.refused() == [], [(p.session_id, p.reason) for p in api.refused()]
    calls = [c for t in api.turns() for c in t.calls]
    assert len(calls) == len(api.sessions) * TURNS * len(TURN)
    assert all(len(c.results) == 1 for c in calls), [c.id for c in calls if len(c.results) != 1]
    for post in api.applied():
        assert len({e["turn_id"] for e in post.events}) == 1  # one turn per request
    if "partial_actions" not in api.quirks:  # else the calls listed at the time, per request
        assert all(len(t.posts) == 1 for t in api.turns())
    for call in calls:
        result = call.results[0]
        if call.name == "boom":
            assert result["success"] is False
            assert "the database is on fire" in result["error"]
        else:
            assert result["success"] is True
    assert {c.results[0]["output"] for c in calls if c.name == "add"} == {"3"}


def check_retries_kept_their_key(api: QuirkyAgents) -> None:
    """A request refused or lost by a quirk was sent again with its Idempotency-Key."""
    for index, post in enumerate(api.posts):
        if post.injected or post.status == 502:
            later = [p for p in api.posts[index + 1:] if p.key == post.key]
            assert later, post
            assert later[-1].status in (200, 202), post


# Every quirk that can go with the others (one stream quirk, one way to answer a POST).
TOGETHER = {"string_arguments", "extra_fields", "post_200_session", "stream_closes",
            "two_turns", "partial_actions", "listing", "transient", "lost_answers",
            "unknown_call_first", "lagging_reads", "sse_multiline"}


# What the server shows when a quirk was met, not just switched on.
EXERCISED = {"two_turns": "two turns listed", "partial_actions": "part of a turn listed",
             "lagging_reads": "stale read"}


CASES = {"plain": set(), **{quirk: {quirk} for quirk in QUIRKS},
         "lagging_reads_polled": {"lagging_reads", "no_stream"},
         "lagging_partial": {"lagging_reads", "partial_actions", "stream_closes"},
         "together": TOGETHER}


@pytest.mark.parametrize("quirks", list(CASES.values()), ids=list(CASES))
async def test_every_call_answered_once_despite_the_quirk(quirks: set[str]) -> None:
    async with QuirkyAgents(quirks, seed=2026) as api:
        await serve(api, batches=2 if "listing" in quirks else 1)
    check_each_call_answered_once(api)
    check_retries_kept_their_key(api)
    for quirk in {"transient", "lost_answers", "unknown_call_first"} & quirks:
        assert sum(api.faults.values()) > 0, quirk
    for quirk, shown in EXERCISED.items():  # together, some may go unmet
        assert quirk not in quirks or quirks is TOGETHER or api.shown[shown] > 0, quirk
    assert all(p.key for p in api.posts)

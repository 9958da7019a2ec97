"""The daemon on backend "agents" against a small fake of the sessions API: rounds are the turns'
function calls, found from live streams, each turn answered by one idempotent events request."""

from __future__ import annotations

import anyio
import pytest

from tests.agents_fake import FakeAgents
from tests.conftest import make_settings, wait_for
from worker.daemon import Worker
from worker.handlers.registry import Registry

pytestmark = pytest.mark.e2e

CALLS = [("add", {"a": 1, "b": 2}), ("weather", {"city": "Paris"}), ("boom", {})]


def agents_worker(api: FakeAgents, sessions: list[str], *, max_streams: int = 96) -> Worker:
    settings = make_settings(
        api={"backend": "agents", "base_url": api.base_url, "max_requests_per_s": 0,
             "max_streams": max_streams},
        watch={"sessions": sessions, "active_poll_interval_s": 0.05,
               "min_idle_poll_interval_s": 0.2, "idle_poll_interval_s": 5.0},
        tools={"modules": ["tests.handlers.sample"]},
        server={"enabled": False},
    )
    return Worker(settings, Registry.from_modules(settings.tools.modules))


def idle(api: FakeAgents, sessions: list[str], turns: int) -> bool:
    return all(api.sessions[s].status == "idle" and len(api.sessions[s].turns) == turns
               for s in sessions)


async def test_sessions_configured_and_announced_have_every_turn_answered_once() -> None:
    """Half configured, half announced; two turns each, the second found from the live stream;
    a failing handler is success: false; requests stay within sessions x (turns + 3)."""
    async with FakeAgents() as api:
        sessions = [api.create_session() for _ in range(6)]
        configured, announced = sessions[:3], sessions[3:]
        for session_id in sessions:
            api.start_turn(session_id, CALLS)
        worker = agents_worker(api, configured)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            assert worker.poller is not None
            for session_id in announced:
                worker.poller.watch(session_id)
            await wait_for(lambda: idle(api, sessions, 1), what="first turns answered")
            await wait_for(lambda: worker.poller is not None and worker.poller.idle,
                           what="the worker to see every session idle")
            for session_id in sessions:
                api.start_turn(session_id, CALLS)
            await wait_for(lambda: idle(api, sessions, 2), what="second turns answered")
            worker.stop()
    assert api.refused == []
    turns = [turn for s in sessions for turn in api.sessions[s].turns]
    assert all(len(turn.answers) == 1 for turn in turns)  # one accepted request per turn
    assert set(api.keys.values()) == {1}
    for turn in turns:
        by_call = {e["call_id"]: e for e in turn.answers[0]}
        assert [by_call[c]["success"] for c, _, _ in turn.calls] == [True, True, False]
        assert "the database is on fire" in by_call[turn.calls[2][0]]["error"]
        assert by_call[turn.calls[0][0]]["output"] == "3"
    assert worker.metrics.rounds_found.labels("stream")._value.get() >= len(sessions)
    assert sum(api.requests.values()) <= len(sessions) * (2 + 3), api.requests


async def test_a_turn_asked_for_while_the_stream_was_down_is_found_after_it_reconnects() -> None:
    """Streams cut, a turn starts meanwhile: the read the cut calls for (or the one after the
    reconnect) finds it, once."""
    async with FakeAgents() as api:
        sessions = [api.create_session() for _ in range(3)]
        worker = agents_worker(api, sessions)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            # Every stream held by the fake (a listener each), not just some reads counted: else
            # a stream opened after the cut and the test would not cut what it means to.
            await wait_for(lambda: api.requests["retrieve"] >= len(sessions) + 1
                           and all(api.sessions[s].listeners for s in sessions),
                           timeout_s=60, what="every stream open and its session read")
            api.drop_streams()
            for session_id in sessions:
                api.start_turn(session_id, CALLS)
            # Generous: after the cut the worker backs off, polls, then reconnects; under load
            # that takes longer, and the test is about "once", not speed.
            await wait_for(lambda: idle(api, sessions, 1), timeout_s=60, what="the turns answered")
            worker.stop()
    assert api.refused == []
    assert all(len(api.sessions[s].turns[0].answers) == 1 for s in sessions)


async def test_refused_and_lost_requests_lose_no_turn_and_answer_none_twice() -> None:
    """10% of requests refused (503) or answered 502 after being applied: every turn is
    answered by one applied request; a lost answer's retry carries the same key."""
    async with FakeAgents(faults=0.1, seed=7) as api:
        sessions = [api.create_session() for _ in range(8)]
        for session_id in sessions:
            api.start_turn(session_id, CALLS)
        worker = agents_worker(api, sessions[:4])
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            assert worker.poller is not None
            for session_id in sessions[4:]:
                worker.poller.watch(session_id)
            for turns in (1, 2, 3):
                await wait_for(lambda turns=turns: idle(api, sessions, turns), timeout_s=20,
                               what=f"turn {turns} answered")
                if turns < 3:
                    for session_id in sessions:
                        api.start_turn(session_id, CALLS)
            worker.stop()
    assert sum(api.faulted.values()) > 0
    for session_id in sessions:
        assert [len(turn.answers) for turn in api.sessions[session_id].turns] == [1, 1, 1]


async def test_past_max_streams_the_other_sessions_are_polled() -> None:
    """Two streams for five sessions: every turn is still answered once, the rest by polls."""
    async with FakeAgents() as api:
        sessions = [api.create_session() for _ in range(5)]
        for session_id in sessions:
            api.start_turn(session_id, CALLS)
        worker = agents_worker(api, sessions, max_streams=2)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await wait_for(lambda: idle(api, sessions, 1), what="every turn answered")
            assert max(len(api.sessions[s].listeners) for s in sessions) <= 1
            assert sum(len(api.sessions[s].listeners) for s in sessions) <= 2
            worker.stop()
    assert api.refused == []
    assert all(len(api.sessions[s].turns[0].answers) == 1 for s in sessions)
    assert api.requests["stream"] == 2

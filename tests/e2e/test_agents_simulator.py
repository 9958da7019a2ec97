"""The daemon on backend "agents" against the built-in simulator: the issue's done-when (#21).

16 sessions of 3 turns x 4 calls (one failing call a turn), half configured and half announced,
all end idle; every turn answered whole by one applied events request; no call answered twice;
failures arrive as success: false; rounds come from the live streams, within
sessions x (turns + 3) requests without faults. Then the same with 10% of requests refused or
lost.
"""

from __future__ import annotations

from collections import Counter

import anyio
import openai
import pytest

from tests.conftest import make_settings, wait_for
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.simulator import FaultPlan, FaultRule, Simulator

pytestmark = pytest.mark.e2e

SESSIONS, TURNS = 16, 3
TURN = [{"name": "add", "arguments": {"a": 1, "b": 2}},
        {"name": "weather", "arguments": {"city": "Paris"}},
        {"name": "add", "arguments": {"a": 40, "b": 2}},
        {"name": "boom", "arguments": {}}]
TOOLS = [{"type": "function", "name": name} for name in ("add", "weather", "boom")]
# 10% of every endpoint's requests refused (429, 5xx) or lost (dropped before or after).
FAULTS = FaultRule(p_429=0.025, retry_after_s=0.05, p_5xx=0.025, p_drop_before=0.025,
                   p_drop_after=0.025)


def agents_worker(sim: Simulator, sessions: list[str]) -> Worker:
    settings = make_settings(
        api={"backend": "agents", "base_url": sim.base_url, "max_requests_per_s": 0},
        watch={"sessions": sessions, "active_poll_interval_s": 0.05,
               "min_idle_poll_interval_s": 1.0, "idle_poll_interval_s": 5.0},
        tools={"modules": ["tests.handlers.sample"]},
        server={"enabled": False},
    )
    settings = settings.model_copy(update={"api_key": type(settings.api_key)(sim.api_key)})
    return Worker(settings, Registry.from_modules(settings.tools.modules))


async def serve_sessions(sim: Simulator) -> Worker:
    """Run the worker until every scripted turn of every session is answered."""
    agent_id = sim.create_agent("e2e", TOOLS)
    sessions = [sim.create_session(agent_id, [TURN] * TURNS) for _ in range(SESSIONS)]
    worker = agents_worker(sim, sessions[: SESSIONS // 2])
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        assert worker.poller is not None
        for session_id in sessions[SESSIONS // 2:]:
            worker.poller.watch(session_id)
        await wait_for(lambda: sim.all_sessions_idle()
                       and all(len(sim.agents.session(s).turns) == TURNS for s in sessions),
                       timeout_s=30, what="every turn of every session answered")
        worker.stop()
    return worker


def check_every_turn_answered_once(sim: Simulator) -> None:
    sessions = sim.agents.sessions()
    assert all(s.status == "idle" for s in sessions)
    per_turn = Counter(turn for post in sim.applied_posts() for turn in post.turn_ids)
    assert len(per_turn) == SESSIONS * TURNS
    assert set(per_turn.values()) == {1}  # each turn answered whole by one applied request
    for post in sim.applied_posts():
        assert len(post.events) == len(TURN)
    results = sim.tool_results()
    assert len({r["call_id"] for r in results}) == len(results) == SESSIONS * TURNS * len(TURN)
    failed = [r for r in results if not r["success"]]
    assert len(failed) == SESSIONS * TURNS
    assert all("the database is on fire" in r["error"] for r in failed)


async def test_sixteen_sessions_answered_from_live_streams_within_the_budget() -> None:
    async with Simulator() as sim:
        worker = await serve_sessions(sim)
    check_every_turn_answered_once(sim)
    assert [p.status for p in sim.events_posts] == [202] * SESSIONS * TURNS
    assert sum(sim.request_counts.values()) <= SESSIONS * (TURNS + 3), sim.request_counts
    assert worker.metrics.rounds_found.labels("stream")._value.get() >= SESSIONS * (TURNS - 1)


async def test_with_ten_percent_of_requests_refused_or_lost() -> None:
    async with Simulator(faults=FaultPlan(default=FAULTS, seed=2026)) as sim:
        await serve_sessions(sim)
    assert sum(sim.faults_injected.values()) > 0
    check_every_turn_answered_once(sim)


async def test_sessions_paused_at_their_spend_limit_are_answered_once_they_go_on() -> None:
    """budget_reached pauses a session after its first turn's results; the worker keeps watching
    it, and once the owner lifts the limit (through the official SDK) the next turn is answered."""
    sessions_n = 4
    async with Simulator() as sim:
        agent_id = sim.create_agent("e2e", TOOLS)
        sessions = [sim.create_session(agent_id, [TURN] * 2) for _ in range(sessions_n)]
        for session_id in sessions:
            sim.agents.set_spend_limit(sim.agents.session(session_id), 1)
        worker = agents_worker(sim, sessions)
        sdk = openai.AsyncOpenAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0)
        async with sdk, anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await wait_for(lambda: all(sim.session(s)["status"] == "budget_reached"
                                       for s in sessions), what="every session paused")
            for session_id in sessions:
                lifted = await sdk.beta.agents.sessions.update(
                    session_id, spend_control={"limit": None})
                assert lifted.spend_control.limit is None
            await wait_for(lambda: sim.all_sessions_idle()
                           and all(len(sim.agents.session(s).turns) == 2 for s in sessions),
                           timeout_s=30, what="the second turns answered")
            worker.stop()
    per_turn = Counter(turn for post in sim.applied_posts() for turn in post.turn_ids)
    assert len(per_turn) == sessions_n * 2
    assert set(per_turn.values()) == {1}

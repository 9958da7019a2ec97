"""Seeded faults: each kind as a real aiohttp client sees it, and the same seed gives the same faults."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import aiohttp
import pytest

from worker.simulator import FaultPlan, FaultRule, Simulator, ToolCallScript
from worker.simulator.faults import ENDPOINTS, FaultInjector

from .helpers import SPEC, SimHttp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def _decisions(plan: FaultPlan, endpoint: str, count: int) -> list[tuple[str | None, int | None]]:
    injector = FaultInjector(plan)
    return [(f.kind, f.status) for f in (injector.decide(endpoint) for _ in range(count))]


def test_rules_are_checked() -> None:
    with pytest.raises(ValueError, match="sum to <= 1"):
        FaultRule(p_429=0.6, p_5xx=0.6)
    with pytest.raises(ValueError, match="within"):
        FaultRule(p_drop_after=-0.1)
    with pytest.raises(ValueError, match="known endpoints: create_assistant"):
        FaultPlan({"get_run": FaultRule()})
    plan = FaultPlan({"retrieve_run": FaultRule(p_429=1.0)}, default=FaultRule(latency_s=0.5))
    assert plan.rule_for("retrieve_run").p_429 == 1.0
    assert plan.rule_for("list_runs").latency_s == 0.5


def test_same_seed_same_faults() -> None:
    rule = FaultRule(p_429=0.2, p_5xx=0.2, p_drop_before=0.1, p_drop_after=0.1)
    plan = FaultPlan(default=rule, seed=7)
    first = _decisions(plan, "submit_tool_outputs", 300)
    assert first == _decisions(FaultPlan(default=rule, seed=7), "submit_tool_outputs", 300)
    assert first != _decisions(FaultPlan(default=rule, seed=8), "submit_tool_outputs", 300)
    kinds = [kind for kind, _ in first]
    assert {"429", "5xx", "drop_before", "drop_after", None} == set(kinds)
    assert 40 <= kinds.count("429") <= 80  # p = 0.2 of 300, for this fixed seed
    assert {status for kind, status in first if kind == "5xx"} == {500, 502, 503}


def test_endpoints_draw_independently() -> None:
    """The n-th submit meets the same fault however many polls came in between."""
    plan = FaultPlan(default=FaultRule(p_5xx=0.5), seed=3)
    alone = _decisions(plan, "submit_tool_outputs", 50)
    injector = FaultInjector(plan)
    interleaved = []
    for n in range(50):
        for _ in range(n % 4):
            injector.decide("retrieve_run")
        fault = injector.decide("submit_tool_outputs")
        interleaved.append((fault.kind, fault.status))
    assert interleaved == alone
    assert set(ENDPOINTS) >= {key.split(":")[0] for key in injector.injected}


@pytest.fixture
async def faulty() -> AsyncIterator[Simulator]:
    """Faults only on retrieve_run (429), list_runs (5xx) and submit_tool_outputs (drops)."""
    plan = FaultPlan({
        "retrieve_run": FaultRule(p_429=1.0, retry_after_s=2.5),
        "list_runs": FaultRule(p_5xx=1.0),
    })
    async with Simulator(faults=plan) as sim:
        yield sim


async def test_429_carries_retry_after(faulty: Simulator) -> None:
    thread_id = faulty.create_thread()
    async with SimHttp(faulty.base_url) as api:
        reply = await api.get(f"/threads/{thread_id}/runs/run_x")
        assert (await api.get(f"/threads/{thread_id}")).status == 200  # other endpoints are fine
    assert reply.status == 429
    assert (reply.headers["Retry-After"], reply.headers["retry-after-ms"]) == ("3", "2500")
    assert reply.body["error"]["code"] == "rate_limit_exceeded"
    assert "x-request-id" in reply.headers
    assert faulty.faults_injected == {"retrieve_run:429": 1}


async def test_5xx_answers_look_real(faulty: Simulator) -> None:
    thread_id = faulty.create_thread()
    async with SimHttp(faulty.base_url) as api:
        replies = [await api.get(f"/threads/{thread_id}/runs") for _ in range(12)]
    assert {r.status for r in replies} == {500, 502, 503}  # for this seed
    for reply in replies:
        SPEC.validate("ErrorResponse", reply.body)
    assert faulty.faults_injected["list_runs:5xx"] == 12


async def test_faults_spare_unauthenticated_requests(faulty: Simulator) -> None:
    thread_id = faulty.create_thread()
    async with SimHttp(faulty.base_url, "sk-wrong") as api:
        assert (await api.get(f"/threads/{thread_id}/runs")).status == 401
    assert faulty.faults_injected == {}


async def _ready_run(sim: Simulator) -> tuple[str, str, list[dict[str, str]]]:
    thread_id = sim.create_thread()
    run_id = sim.create_run(thread_id, sim.create_assistant("demo"), [[ToolCallScript("echo", "{}")]])
    calls = sim.run(run_id)["required_action"]["submit_tool_outputs"]["tool_calls"]
    return thread_id, run_id, [{"tool_call_id": c["id"], "output": "ok"} for c in calls]


async def _post(sim: Simulator, path: str, body: object) -> int:
    headers = {"Authorization": f"Bearer {sim.api_key}", "OpenAI-Beta": "assistants=v2"}
    async with aiohttp.ClientSession() as session, session.post(
        sim.base_url + path, json=body, headers=headers
    ) as response:
        return response.status


async def test_drop_before_applies_nothing() -> None:
    plan = FaultPlan({"submit_tool_outputs": FaultRule(p_drop_before=1.0)})
    async with Simulator(faults=plan) as sim:
        thread_id, run_id, outputs = await _ready_run(sim)
        path = f"/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await _post(sim, path, {"tool_outputs": outputs})
        assert sim.submissions == []
        assert sim.request_counts["submit_tool_outputs"] == 1  # a POST is not resent
        assert sim.run(run_id)["status"] == "requires_action"
        assert sim.faults_injected == {"submit_tool_outputs:drop_before": 1}


async def test_drop_after_applies_the_submission_but_loses_the_answer() -> None:
    plan = FaultPlan({"submit_tool_outputs": FaultRule(p_drop_after=1.0)})
    async with Simulator(faults=plan) as sim:
        thread_id, run_id, outputs = await _ready_run(sim)
        path = f"/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await _post(sim, path, {"tool_outputs": outputs})
        assert [s.status for s in sim.accepted_submissions(run_id)] == [200]
        assert sim.run(run_id)["status"] == "completed"
        # The retry a client makes after a lost answer is refused: the round is already done.
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await _post(sim, path, {"tool_outputs": outputs})
        assert [s.status for s in sim.submissions] == [200, 400]


async def test_aiohttp_resends_a_dropped_get_once() -> None:
    """aiohttp (3.14) resends an idempotent request once after a disconnection, whether or not
    the connection was reused: one client call of a GET meets two faults; a POST meets one."""
    plan = FaultPlan({"retrieve_run": FaultRule(p_drop_before=1.0)})
    async with Simulator(faults=plan) as sim:
        thread_id = sim.create_thread()
        async with SimHttp(sim.base_url) as api:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await api.get(f"/threads/{thread_id}/runs/run_x")
        assert sim.request_counts["retrieve_run"] == 2
        assert sim.faults_injected == {"retrieve_run:drop_before": 2}


async def test_rule_latency_applies_to_its_endpoint() -> None:
    plan = FaultPlan({"list_assistants": FaultRule(latency_s=0.2)})
    async with Simulator(faults=plan) as sim, SimHttp(sim.base_url) as api:
        started = time.monotonic()
        assert (await api.get("/assistants")).status == 200
        assert time.monotonic() - started >= 0.2
        assert sim.faults_injected == {}  # latency alone is not a fault

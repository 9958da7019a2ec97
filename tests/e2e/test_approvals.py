"""Tool approvals (Azure): the [approvals] rules answer MCP calls, or leave the run for a person."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import calls, make_worker
from worker.simulator import Simulator, ToolCallScript
from worker.testing import capture_logs

pytestmark = pytest.mark.e2e

KEY = "sk-test"
AZURE = {"backend": "azure", "azure_auth": "api_key"}
SEARCH = ToolCallScript("search_code", '{"q": "private"}', server_label="github")
DELETE = ToolCallScript("delete_repo", '{"repo": "x"}', server_label="github")
RULES = [{"server_label": "github", "tool": "search_*", "decision": "approve"},
         {"server_label": "github", "tool": "delete_*", "decision": "deny"},
         {"server_label": "*", "tool": "*", "decision": "leave"}]


def decisions(worker: Any) -> dict[str, float | None]:
    sample = worker.metrics.registry.get_sample_value
    return {d: sample("toolworker_tool_approvals_total", {"decision": d})
            for d in ("approve", "deny", "leave")}


def start(sim: Simulator, *rounds: list[ToolCallScript]) -> tuple[str, str]:
    thread_id = sim.create_thread()
    return thread_id, sim.create_run(thread_id, sim.create_assistant(name="a"), list(rounds))


async def run_until_idle(worker: Any) -> None:
    with anyio.fail_after(30):
        await worker.run(until_idle=True)


@pytest.mark.parametrize("stream", [True, False])
async def test_an_approve_rule_answers_and_the_run_completes(stream: bool) -> None:
    """Approved MCP calls go in one submission; the run goes on to its function round."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        thread_id, run_id = start(sim, [SEARCH, SEARCH], calls(("add", {"a": 1})))
        worker = make_worker(sim.base_url, [thread_id], api={**AZURE, "stream": stream},
                             approvals={"rules": RULES})
        with capture_logs() as logs:
            await run_until_idle(worker)
        first, second = sim.accepted_submissions(run_id)
        assert sim.run(run_id)["status"] == "completed"
    assert [approve for _, approve in first.tool_approvals] == [True, True]
    assert first.body == {"tool_approvals": [  # nothing but the SDK's ToolApproval fields
        {"tool_call_id": i, "approve": True} for i, _ in first.tool_approvals],
        **({"stream": True} if stream else {})}
    assert second.tool_outputs[0][1] == "2"
    assert not [s for s in sim.submissions if s.status != 200]
    assert decisions(worker) == {"approve": 2, "deny": 0, "leave": 0}
    lines = [e for e in logs if e["event"] == "tool approval decided"]
    assert [(e["rule"], e["tool"], e["server_label"]) for e in lines] == [
        (0, "search_code", "github")] * 2
    assert not any("private" in str(e) for e in logs)  # the arguments stay out of the log


async def test_a_deny_rule_answers_with_approve_false() -> None:
    """Denied and approved calls of one round go together, each with its own answer."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        thread_id, run_id = start(sim, [SEARCH, DELETE])
        worker = make_worker(sim.base_url, [thread_id], api=AZURE, approvals={"rules": RULES})
        await run_until_idle(worker)
        (submission,) = sim.accepted_submissions(run_id)
        assert sim.run(run_id)["status"] == "completed"
    assert [approve for _, approve in submission.tool_approvals] == [True, False]
    assert decisions(worker) == {"approve": 1, "deny": 1, "leave": 0}


async def test_a_leave_rule_leaves_the_run_for_a_person() -> None:
    """No submission; counted and logged once; read at the idle pace; other threads go on."""
    idle_s = 0.3
    async with Simulator(api_key=KEY, profile="azure") as sim:
        thread_id, run_id = start(sim, [SEARCH, ToolCallScript("x", "{}", server_label="jira")])
        other_thread, other_run = start(sim, calls(("add", {"a": 1})))
        worker = make_worker(sim.base_url, [thread_id, other_thread], api=AZURE,
                             approvals={"rules": RULES},
                             watch={"active_poll_interval_s": 0.01, "idle_poll_interval_s": idle_s})
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await wait_for(lambda: sim.run(other_run)["status"] == "completed",
                               what="the other run")
                reads = sim.request_counts["retrieve_run"]
                started = time.monotonic()
                await wait_for(lambda: sim.request_counts["retrieve_run"] >= reads + 3,
                               what="three more reads")
                elapsed_s = time.monotonic() - started
                worker.stop()
        assert not sim.accepted_submissions(run_id)
        assert sim.run(run_id)["status"] == "requires_action"
    assert elapsed_s >= 2 * idle_s  # at the active pace three reads take well under 0.1 s
    assert decisions(worker) == {"approve": 0, "deny": 0, "leave": 1}
    assert worker.metrics.registry.get_sample_value(
        "toolworker_runs_skipped_total", {"reason": "awaiting_approval"}) == 1
    (left,) = [e for e in logs if e["event"] == "tool approval left for a person"]
    assert (left["rule"], left["server_label"], left["tool"]) == (2, "jira", "x")


async def test_the_openai_backend_never_submits_approvals() -> None:
    """On OpenAI there is no policy, even with rules set: the run is left as before."""
    async with Simulator(api_key=KEY) as sim:
        thread_id, run_id = start(sim, [SEARCH])
        worker = make_worker(sim.base_url, [thread_id], approvals={"rules": RULES})
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_for(lambda: worker.metrics.registry.get_sample_value(
                "toolworker_runs_skipped_total", {"reason": "unsupported_action"}) == 1,
                what="the run to be left")
            worker.stop()
        assert not sim.submissions
        assert sim.run(run_id)["status"] == "requires_action"
    assert decisions(worker) == {"approve": 0, "deny": 0, "leave": 0}

"""Serve only your agents: [watch] assistants and [tools] unknown split a project across deployments."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.conftest import make_settings
from tests.e2e.conftest import calls, make_worker
from worker.rounds.scope import unknown_policy
from worker.simulator import Simulator
from worker.testing import capture_logs

pytestmark = pytest.mark.e2e

KEY = "sk-test"


def skipped(worker: Any, reason: str) -> float | None:
    value: float | None = worker.metrics.registry.get_sample_value(
        "toolworker_runs_skipped_total", {"reason": reason})
    return value


async def run_both(*workers: Any) -> None:
    """Run every worker until each has nothing left to do."""
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(lambda w=worker: w.run(until_idle=True))


async def test_each_deployment_answers_only_its_assistants_runs() -> None:
    """Two workers on the same threads, each naming its assistant: no 'unknown tool' outputs."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        math_id = sim.create_assistant(name="math")
        people_id = sim.create_assistant(name="people")
        threads, runs = [], []
        for assistant_id, round_ in ((math_id, calls(("add", {"a": 1}))),
                                     (people_id, calls(("whoami", {})))):
            threads.append(sim.create_thread())
            runs.append(sim.create_run(threads[-1], assistant_id, rounds=[round_, round_]))
        azure = {"backend": "azure", "azure_auth": "api_key"}
        math = make_worker(sim.base_url, [], api=azure,
                           watch={"discover": True, "assistants": [math_id]})
        people = make_worker(sim.base_url, [], modules=["tests.handlers.resourced"], api=azure,
                             watch={"discover": True, "assistants": [people_id]})
        await run_both(math, people)
        outputs = [[o for s in sim.accepted_submissions(run_id) for _, o in s.tool_outputs]
                   for run_id in runs]
    assert outputs[0] == ["2", "2"]
    assert all(o.startswith('{"user":null') for o in outputs[1])
    assert not any(s.status != 200 for s in sim.submissions)
    assert skipped(math, "other_assistant") == skipped(people, "other_assistant") == 1


async def test_rounds_for_another_deployments_tools_are_left_unclaimed() -> None:
    """With unknown = "leave", each deployment answers the rounds of its own tools only."""
    async with Simulator(api_key=KEY) as sim:
        assistant_id = sim.create_assistant(name="shared")
        threads = [sim.create_thread(), sim.create_thread()]
        add_run = sim.create_run(threads[0], assistant_id,
                                 rounds=[calls(("add", {"a": 1})), calls(("add", {"a": 2}))])
        who_run = sim.create_run(threads[1], assistant_id, rounds=[calls(("whoami", {}))])
        leave = {"unknown": "leave"}
        math = make_worker(sim.base_url, threads, tools=leave)
        people = make_worker(sim.base_url, threads, modules=["tests.handlers.resourced"],
                             tools=leave)
        with capture_logs() as logs:
            await run_both(math, people)
        assert [o for s in sim.accepted_submissions(add_run) for _, o in s.tool_outputs] == [
            "2", "3"]
        assert len(sim.accepted_submissions(who_run)) == 1
        assert not any(s.status != 200 for s in sim.submissions)
    leaving = [e for e in logs if e["event"].startswith("round calls a tool not registered")]
    assert sorted(e["run_id"] for e in leaving) == sorted([add_run, who_run])
    assert skipped(math, "unknown_tool") == skipped(people, "unknown_tool") == 1


async def test_by_default_an_unknown_tool_is_still_answered_with_an_error() -> None:
    """Without [tools] unknown, a worker of named threads answers as it always did."""
    async with Simulator(api_key=KEY) as sim:
        assistant_id = sim.create_assistant(name="a")
        thread_id = sim.create_thread()
        run_id = sim.create_run(thread_id, assistant_id, rounds=[calls(("nope", {}))])
        await run_both(make_worker(sim.base_url, [thread_id]))
        (submission,) = sim.accepted_submissions(run_id)
    assert submission.tool_outputs[0][1].startswith("Error: unknown tool 'nope'")


@pytest.mark.parametrize(("watch", "tools", "policy"), [
    ({}, {}, "error"),
    ({"discover": True}, {}, "leave"),
    ({"discover": True, "assistants": ["asst_a"]}, {}, "error"),
    ({"discover": True}, {"unknown": "error"}, "error"),
    ({"assistants": ["asst_a"]}, {"unknown": "leave"}, "leave"),
])
def test_the_unknown_tool_policy_follows_what_the_worker_serves(
    watch: dict[str, Any], tools: dict[str, Any], policy: str
) -> None:
    """"leave" by default only for a worker that follows a whole project for any assistant."""
    settings = make_settings(api={"backend": "azure"}, watch=watch, tools=tools)
    assert unknown_policy(settings) == policy

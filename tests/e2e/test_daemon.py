"""The daemon against the simulator: rounds answered at once, submitted once, whole."""

from __future__ import annotations

import pytest

from tests.conftest import first_submit_fault
from tests.e2e.conftest import (
    SIM_KEY,
    assert_each_round_submitted_once,
    calls,
    run_worker,
    start_runs,
)
from tests.handlers import sample
from worker.simulator import FaultRule, Simulator

pytestmark = pytest.mark.e2e


async def test_outputs_are_delivered_and_correct(sim: Simulator) -> None:
    """Each tool call's output reaches the API under its own tool_call_id."""
    _, (run_id,) = start_runs(sim, [[calls(("add", {"a": 2, "b": 3}),
                                          ("weather", {"city": "Oslo", "unit": "f"}))]])
    threads = [sim.run(run_id)["thread_id"]]
    await run_worker(sim, threads)
    (submission,) = sim.accepted_submissions(run_id)
    assert [output for _, output in submission.tool_outputs] == [
        "5", '{"city":"Oslo","temperature":70,"unit":"f"}']
    assert sim.run(run_id)["status"] == "completed"


async def test_calls_of_a_round_run_at_the_same_time(sim: Simulator) -> None:
    """The handlers of one round overlap in time: every call starts before any call ends."""
    sample.CALLS.clear()
    round_ = calls(*[("nap", {"seconds": 0.3})] * 4, *[("blocking_sleep", {"seconds": 0.3})] * 4)
    threads, runs = start_runs(sim, [[round_]])
    await run_worker(sim, threads)
    assert len(sample.CALLS) == 8
    assert max(start for *_, start, _ in sample.CALLS) < min(end for *_, end in sample.CALLS)
    assert_each_round_submitted_once(sim, runs, [1])


async def test_many_threads_and_rounds_each_submitted_once(sim: Simulator) -> None:
    """Twelve threads with three rounds of three calls: every round once, with all outputs."""
    script = [calls(("add", {"a": r}), ("nap", {"seconds": 0.01}), ("describe", {}))
              for r in range(3)]
    threads, runs = start_runs(sim, [script] * 12)
    await run_worker(sim, threads)
    assert_each_round_submitted_once(sim, runs, [3] * 12)
    for submission in sim.accepted_submissions():
        assert len(submission.tool_outputs) == 3


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (("add", "{not json"), "Error: invalid arguments for tool 'add': not valid JSON"),
        (("get_stock_price", {"ticker": "X"}), "Error: unknown tool 'get_stock_price'"),
        (("add", {"a": "two"}), "a: Input should be a valid integer"),
        (("boom", {}), "RuntimeError: the database is on fire"),
        (("hang", {}), "Error: the tool 'hang' timed out after 0.2 s."),
        (("fail_politely", {"city": "Atlantis"}), "city 'Atlantis' not found"),
    ],
)
async def test_bad_input_yields_a_clear_output_and_the_run_completes(
    sim: Simulator, call: tuple[str, object], expected: str
) -> None:
    """A broken call gets a clear output; its round is still submitted whole and the run ends."""
    threads, runs = start_runs(sim, [[calls(call, ("add", {"a": 1}))]])
    await run_worker(sim, threads)
    (submission,) = sim.accepted_submissions(runs[0])
    assert expected in submission.tool_outputs[0][1]
    assert submission.tool_outputs[1][1] == "2"
    assert_each_round_submitted_once(sim, runs, [1])


async def test_a_round_is_submitted_before_the_run_expires(sim: Simulator) -> None:
    """When handlers outlast the run's expiry, timeouts are submitted in time instead."""
    threads, runs = start_runs(sim, [[calls(("nap", {"seconds": 60}), ("add", {"a": 1}))]],
                               expires_after_s=3.0)
    await run_worker(sim, threads, tools={"deadline_margin_s": 1.0})
    (submission,) = sim.accepted_submissions(runs[0])
    assert "timed out" in submission.tool_outputs[0][1]
    assert submission.tool_outputs[1][1] == "2"
    assert sim.run(runs[0])["status"] == "completed"


async def test_new_runs_on_a_watched_thread_are_followed(sim: Simulator) -> None:
    """After a run completes, a new run on the same thread is found and answered."""
    threads, runs = start_runs(sim, [[calls(("add", {"a": 1}))]])
    await run_worker(sim, threads)
    assistant_id = sim.run(runs[0])["assistant_id"]
    second = sim.create_run(threads[0], assistant_id, rounds=[calls(("add", {"a": 10}))])
    await run_worker(sim, threads)
    assert_each_round_submitted_once(sim, [runs[0], second], [1, 1])
    assert sim.accepted_submissions(second)[0].tool_outputs[0][1] == "11"


async def test_a_failed_submission_is_sent_again_without_running_the_handlers() -> None:
    """With retries exhausted, the kept outputs are submitted again; the handlers run once."""
    async with Simulator(api_key=SIM_KEY, faults=first_submit_fault(FaultRule(p_5xx=0.5), "5xx")) as sim:
        threads, runs = start_runs(sim, [[calls(("add", {"a": 1}))]])
        worker = await run_worker(sim, threads, api={"max_retries": 0})
        assert_each_round_submitted_once(sim, runs, [1])
    sample = worker.metrics.registry.get_sample_value
    assert sample("toolworker_tool_calls_total", {"tool": "add", "outcome": "ok"}) == 1
    assert sample("toolworker_rounds_submitted_total", {"outcome": "ok"}) == 1
    assert sample("toolworker_rounds_submitted_total", {"outcome": "failed"}) == 0


async def test_until_idle_ends_even_when_the_budget_keeps_a_poll_waiting(sim: Simulator) -> None:
    """With a tight request budget an idle re-poll is always queued; --once still ends."""
    threads, runs = start_runs(sim, [[calls(("add", {"a": 1}))]] * 100)
    await run_worker(sim, threads, timeout_s=30, api={"max_requests_per_s": 150},
                     watch={"idle_poll_interval_s": 0.2})
    assert_each_round_submitted_once(sim, runs, [1] * 100)


async def test_next_rounds_come_from_the_stream_not_from_polls() -> None:
    """With streamed submissions, a run's rounds after the first are found without a poll."""
    async with Simulator(api_key=SIM_KEY, thinking_s=0.05) as sim:
        script = [calls(("add", {"a": r})) for r in range(4)]
        threads, runs = start_runs(sim, [script] * 3)
        worker = await run_worker(sim, threads, watch={"active_poll_interval_s": 5.0})
        assert_each_round_submitted_once(sim, runs, [4] * 3)
    sample = worker.metrics.registry.get_sample_value
    assert sample("toolworker_rounds_found_total", {"by": "stream"}) == 9
    assert sample("toolworker_rounds_found_total", {"by": "poll"}) == 3
    assert sample("toolworker_streams_broken_total") == 0

"""Cancellation: a round's handlers stop only when its run says it stopped waiting."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from worker.errors import ApiError
from worker.models import Round, Run, RunStatus, SubmitOutcome, ToolCall
from worker.rounds.cancellation import unless_run_moves_on

pytestmark = pytest.mark.anyio

CALL = ToolCall(id="call_1", name="add", arguments="{}")
ROUND = Round(thread_id="thread_1", run_id="run_1", assistant_id="asst_1", expires_at=None,
              tool_calls=(CALL,), detected_at=0.0)


def run(status: RunStatus, *, calls: tuple[ToolCall, ...] = (), run_id: str = "run_1") -> Run:
    return Run(id=run_id, thread_id="thread_1", assistant_id="asst_1", status=status,
               expires_at=None, required_action_type="submit_tool_outputs" if calls else None,
               tool_calls=calls)


class Api:
    """Answers each read with the next of ``answers`` (the last one for ever)."""

    def __init__(self, *answers: Run | Exception) -> None:
        self.answers = list(answers)
        self.reads = 0
        self.read_five_times = anyio.Event()

    async def retrieve_run(self, thread_id: str, run_id: str, **_: Any) -> Run:
        self.reads += 1
        if self.reads == 5:
            self.read_five_times.set()
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def work_until(api: Api) -> str:
    await api.read_five_times.wait()
    return "outputs"


@pytest.mark.parametrize("answer", [
    run(RunStatus.REQUIRES_ACTION, calls=(CALL,)),
    run(RunStatus.UNKNOWN),  # a status the worker cannot read (a session paused at its budget)
    ApiError("the API answered 503", endpoint="retrieve_run"),
    # A session whose reads lag: the turn before this one still waits, read after read, or
    # this turn still waits for the calls answered before this round's were listed.
    run(RunStatus.REQUIRES_ACTION, calls=(ToolCall("call_0", "add", "{}"),), run_id="turn_0"),
    run(RunStatus.REQUIRES_ACTION, calls=(ToolCall("call_0", "add", "{}"),)),
])
async def test_a_run_that_may_still_wait_lets_the_handlers_finish(answer: Run | Exception) -> None:
    api = Api(answer)
    result = await unless_run_moves_on(lambda: work_until(api), api,  # type: ignore[arg-type]
                                       ROUND, interval_s=0.001)
    assert result == "outputs"


async def test_one_stale_read_does_not_stop_the_handlers() -> None:
    """A lagging replica shows the run in progress once; every other read shows it waiting."""
    waiting = run(RunStatus.REQUIRES_ACTION, calls=(CALL,))
    api = Api(run(RunStatus.IN_PROGRESS), waiting, run(RunStatus.IN_PROGRESS), waiting)
    result = await unless_run_moves_on(lambda: work_until(api), api,  # type: ignore[arg-type]
                                       ROUND, interval_s=0.001)
    assert result == "outputs"


@pytest.mark.parametrize(("status", "outcome"), [
    (RunStatus.CANCELLED, SubmitOutcome.CANCELLED),
    (RunStatus.EXPIRED, SubmitOutcome.EXPIRED),
    (RunStatus.FAILED, SubmitOutcome.REJECTED),
    (RunStatus.IN_PROGRESS, SubmitOutcome.ALREADY_SUBMITTED),
])
async def test_a_run_that_moved_on_stops_the_handlers(
    status: RunStatus, outcome: SubmitOutcome,
) -> None:
    api = Api(run(RunStatus.UNKNOWN), run(status))
    result = await unless_run_moves_on(anyio.sleep_forever, api,  # type: ignore[arg-type]
                                       ROUND, interval_s=0.001)
    assert result is outcome

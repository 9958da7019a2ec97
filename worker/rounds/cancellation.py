"""Cancellation: stop a round's handlers when its run stops waiting for them.

A run can be cancelled, expire, or be answered by someone else while its handlers run. Left
alone, the handlers would run to their timeout (a minute by default) for outputs nobody will
take; so the run is looked at, at a slow pace, while they run, and the handlers are stopped
once two reads in a row show it moved on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import anyio
import structlog

from worker.api.budget import Lane
from worker.errors import ApiError, NotFound
from worker.models import RunStatus, SubmitOutcome

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from worker.api.protocol import RoundsApi
    from worker.models import Round, Run

__all__ = ["unless_run_moves_on"]

log = structlog.get_logger("worker.rounds.cancellation")

T = TypeVar("T")


async def unless_run_moves_on(
    work: Callable[[], Awaitable[T]],
    client: RoundsApi,
    round_: Round,
    *,
    interval_s: float,
    timeout_s: float = 10.0,
) -> T | SubmitOutcome:
    """``work()``'s result, or the outcome of the round if its run stopped waiting first.

    The run is read every ``interval_s`` while ``work`` runs; a read that fails is ignored
    (the work goes on), since only the run itself can say it moved on.
    """
    outcome: list[SubmitOutcome] = []
    result: list[T] = []

    async def look() -> None:
        outcome.append(await _until_moved_on(client, round_, interval_s, timeout_s))
        log.info("the run stopped waiting for this round; stopping its handlers",
                 outcome=outcome[0].value)
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(look)
        result.append(await work())
        tg.cancel_scope.cancel()
    return result[0] if result else outcome[0]


async def _until_moved_on(
    client: RoundsApi, round_: Round, interval_s: float, timeout_s: float
) -> SubmitOutcome:
    """Read the run every ``interval_s`` until two reads in a row say it no longer waits for
    the round: one read may be stale (a lagging replica behind the API, a gateway's cache)."""
    seen: SubmitOutcome | None = None
    while True:
        await anyio.sleep(interval_s)
        try:
            run = await client.retrieve_run(
                round_.thread_id, round_.run_id, lane=Lane.ACTIVE, retries=0, timeout_s=timeout_s,
            )
        except NotFound:
            return SubmitOutcome.REJECTED
        except ApiError:
            continue
        outcome = _moved_on(run, round_)
        if outcome is not None and seen is not None:
            return outcome
        seen = outcome


def _moved_on(run: Run, round_: Round) -> SubmitOutcome | None:
    if run.waits_for(round_) or run.status is RunStatus.UNKNOWN:
        return None  # a status the worker cannot read says nothing about the round: work on
    if run.wants_tool_outputs:
        # Waiting for other calls: of another turn, or of this one before our last answer
        # (lagging reads, however many in a row), or another turn listed first. That says
        # nothing of this round; its submission will.
        return None
    if run.status is RunStatus.EXPIRED:
        return SubmitOutcome.EXPIRED
    if run.status in (RunStatus.CANCELLED, RunStatus.CANCELLING):
        return SubmitOutcome.CANCELLED
    if run.status in (RunStatus.FAILED, RunStatus.INCOMPLETE):
        return SubmitOutcome.REJECTED  # it ended without these outputs
    return SubmitOutcome.ALREADY_SUBMITTED  # it went on: someone else's outputs were taken

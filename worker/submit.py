"""Submitter: one submit_tool_outputs request per Round, its outcome counted and logged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import structlog

from .errors import ApiError, RunNotActionable
from .models import RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .client import ApiClient
    from .metrics import Metrics
    from .models import Round, ToolOutput

__all__ = ["SubmitResult", "Submitter", "expiry_deadline"]

log = structlog.get_logger("worker.submit")

# The API rounds expires_at down to whole seconds; keep clear of the edge so a request in
# flight does not arrive after the run expired.
EXPIRY_GUARD_S = 0.5


def expiry_deadline(round_: Round) -> float | None:
    """The anyio-clock time after which the run refuses outputs, or None when unknown."""
    expiry = round_.expiry()
    return None if expiry is None else expiry - EXPIRY_GUARD_S


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What became of a round's submission, and when the API says to look at the run again."""

    outcome: str  # one of metrics.SUBMIT_OUTCOMES
    poll_after_s: float | None = None


class Submitter:
    """Sends a round's outputs in one request and settles what a 400 meant."""

    def __init__(self, client: ApiClient, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    async def submit(self, round_: Round, outputs: Sequence[ToolOutput]) -> SubmitResult:
        """Submit every output in one request, and count and log what came of it."""
        deadline = expiry_deadline(round_)
        if deadline is not None and anyio.current_time() >= deadline:
            result = SubmitResult("expired")
        else:
            result = await self._send(round_, outputs, deadline)
        outcome = result.outcome
        self._metrics.rounds.labels(outcome).inc()
        latency_s = anyio.current_time() - round_.detected_at
        self._metrics.round_latency.observe(latency_s)
        event = "round submitted" if outcome == "ok" else "round not submitted"
        (log.info if outcome in ("ok", "already_submitted") else log.warning)(
            event,
            outcome=outcome,
            tool_calls=len(outputs),
            latency_s=round(latency_s, 4),
            outcomes=_count(o.outcome for o in outputs),
            tools=_count(o.tool for o in outputs),
        )
        return result

    async def _send(
        self, round_: Round, outputs: Sequence[ToolOutput], deadline: float | None
    ) -> SubmitResult:
        try:
            run = await self._client.submit_tool_outputs(
                round_.thread_id, round_.run_id, outputs, deadline=deadline
            )
        except RunNotActionable as exc:
            return SubmitResult(await self._settle(round_, exc))
        except ApiError as exc:
            log.warning("submitting the round failed", error=str(exc))
            return SubmitResult("failed")
        # The answer is the run, now queued; its hint says when the model's next turn is due.
        hint_ms = run.poll_after_ms
        return SubmitResult("ok", None if hint_ms is None else hint_ms / 1000)

    async def _settle(self, round_: Round, exc: RunNotActionable) -> str:
        # The run tells what the 400 meant: it moved on (someone's outputs were applied),
        # it ended, or it still waits and refused ours.
        try:
            run = await self._client.retrieve_run(round_.thread_id, round_.run_id)
        except ApiError:
            log.warning("submission refused", error=exc.api_message)
            return "rejected"
        if run.status is RunStatus.EXPIRED:
            return "expired"
        if run.wants_tool_outputs and {c.id for c in run.tool_calls} == round_.key[1]:
            log.warning("submission refused while the run still waits", error=exc.api_message)
            return "rejected"
        if run.status in (RunStatus.CANCELLED, RunStatus.CANCELLING, RunStatus.FAILED):
            log.info("run ended before the outputs arrived", status=run.status.value)
            return "rejected"
        if exc.after_lost_answer:
            log.info("the answer to our submission was lost, but the run took the outputs")
            return "ok"
        log.info("another worker submitted this round first")
        return "already_submitted"


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts

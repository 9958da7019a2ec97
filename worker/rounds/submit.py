"""Submitter: a round's outputs in one submit_tool_outputs request, sent until the run takes them.

Outputs, once computed, are never thrown away while the run may still take them: a failed
submission is retried with backoff until the run expires (or ``submit_window_s`` when it has
no expiry), and every refusal is classified by reading the run back.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import structlog

from worker.api.retry import RetryPolicy
from worker.errors import (
    ApiConnectionError,
    ApiError,
    ApiStatusError,
    ApiTimeout,
    BadAnswer,
    NotFound,
    RunNotActionable,
)
from worker.models import RunStatus, SubmitOutcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    from worker.api.protocol import RoundsApi
    from worker.models import Round, Run, ToolApproval, ToolOutput
    from worker.observability.metrics import Metrics

__all__ = ["SubmitResult", "Submitter", "expiry_deadline"]

log = structlog.get_logger("worker.rounds.submit")

# Outcomes logged as routine (info); the others are warnings someone should read.
_ROUTINE = frozenset(
    {SubmitOutcome.OK, SubmitOutcome.ALREADY_SUBMITTED, SubmitOutcome.CANCELLED}
)

# The API rounds expires_at down to whole seconds; keep clear of the edge so a request in
# flight does not arrive after the run expired.
EXPIRY_GUARD_S = 0.5


def expiry_deadline(round_: Round) -> float | None:
    """The anyio-clock time after which the run refuses outputs, or None when unknown."""
    return None if round_.expiry is None else round_.expiry - EXPIRY_GUARD_S


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What became of a round's submission, and when the API says to look at the run again.

    ``next_run`` is the run as a streamed submission last showed it: waiting for its next
    round, or ended. Without it, the run is looked at after ``poll_after_s`` (None: now).
    """

    outcome: SubmitOutcome
    poll_after_s: float | None = None
    next_run: Run | None = None


class Submitter:
    """Sends a round's outputs in one request, again until the run takes or refuses them."""

    def __init__(
        self,
        client: RoundsApi,
        metrics: Metrics,
        *,
        window_s: float = 600.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``window_s``: how long to keep trying when the run has no ``expires_at``."""
        self._client = client
        self._metrics = metrics
        self._window_s = window_s
        self._retry = retry or RetryPolicy(max_retries=0, base_s=0.5, cap_s=15.0)
        self._stream_refused = False

    async def submit(self, round_: Round, outputs: Sequence[ToolOutput]) -> SubmitResult:
        """Submit every output in one request, and count and log what came of it."""
        result = await self._deliver(round_, outputs)
        outcome = result.outcome
        self._metrics.rounds.labels(outcome.value).inc()
        latency_s = anyio.current_time() - round_.detected_at
        self._metrics.round_latency.observe(latency_s)
        (log.info if outcome in _ROUTINE else log.warning)(
            "round submitted" if outcome is SubmitOutcome.OK else "round not submitted",
            outcome=outcome.value,
            tool_calls=len(outputs),
            latency_s=round(latency_s, 4),
            outcomes=dict(Counter(o.outcome.value for o in outputs)),
            tools=_tool_counts(outputs),
        )
        return result

    async def submit_approvals(
        self, round_: Round, approvals: Sequence[ToolApproval]
    ) -> SubmitResult:
        """Submit an approval round's answers in one request, as ``submit`` does outputs."""
        result = await self._deliver(round_, (), approvals)
        ok = result.outcome is SubmitOutcome.OK
        (log.info if result.outcome in _ROUTINE else log.warning)(
            "tool approvals submitted" if ok else "tool approvals not submitted",
            outcome=result.outcome.value, tool_calls=len(approvals),
            approved=sum(a.approve for a in approvals))
        return result

    def record_abandoned(self, round_: Round, outcome: SubmitOutcome) -> None:
        """Count a round whose run stopped waiting before its outputs were ready."""
        self._metrics.rounds.labels(outcome.value).inc()
        log.info("round not submitted: the run stopped waiting", outcome=outcome.value,
                 tool_calls=len(round_.tool_calls))

    async def _deliver(
        self, round_: Round, outputs: Sequence[ToolOutput],
        approvals: Sequence[ToolApproval] = (),
    ) -> SubmitResult:
        deadline = expiry_deadline(round_)
        if deadline is None:
            deadline = anyio.current_time() + self._window_s
        maybe_applied = False  # an attempt whose answer we never read may have been applied
        attempt = 0
        stream = not self._stream_refused
        while anyio.current_time() < deadline:
            error: ApiError | None = None
            try:
                return await self._send(round_, outputs, deadline, stream=stream,
                                        approvals=approvals)
            except (RunNotActionable, NotFound) as exc:
                # OpenAI refuses a run that moved on with 400, other servers with 404; the run
                # itself says which it was.
                maybe_applied = maybe_applied or (
                    isinstance(exc, RunNotActionable) and exc.after_lost_answer)
                outcome = await self._read_back(round_, maybe_applied, refused=exc)
                if outcome is SubmitOutcome.REJECTED and stream and self._client.can_stream:
                    stream = False  # perhaps it is "stream" that was refused: once without
                    continue
            except ApiError as exc:
                maybe_applied = maybe_applied or _may_have_applied(exc)
                if attempt == 0 or isinstance(exc, BadAnswer):
                    log.warning("submitting the round failed; keeping the outputs",
                                error=str(exc), attempt=attempt + 1)
                outcome = await self._read_back(round_, maybe_applied)
                error = exc
            if outcome is not None:
                return SubmitResult(outcome)
            await anyio.sleep(min(self._retry.delay_s(attempt, error),
                                  max(deadline - anyio.current_time(), 0.0)))
            attempt += 1
        return SubmitResult(SubmitOutcome.EXPIRED if round_.expiry is not None
                            else SubmitOutcome.FAILED)

    async def _send(
        self, round_: Round, outputs: Sequence[ToolOutput], deadline: float, *, stream: bool,
        approvals: Sequence[ToolApproval] = (),
    ) -> SubmitResult:
        """One submission; streamed when allowed, so the next round comes without a poll."""
        if stream and self._client.can_stream:
            run = await self._client.submit_tool_outputs_streaming(
                round_.thread_id, round_.run_id, outputs, approvals=approvals)
            if run is None:  # accepted; the stream did not say what came next: look now
                return SubmitResult(SubmitOutcome.OK, 0.0)
            if run.wants_tool_outputs or run.status.is_terminal:
                return SubmitResult(SubmitOutcome.OK, None, next_run=run)
        else:
            run = await self._client.submit_tool_outputs(
                round_.thread_id, round_.run_id, outputs, deadline=deadline, approvals=approvals)
            if not stream and not self._stream_refused and self._client.can_stream:
                self._stream_refused = True
                log.warning("the API refused a streamed submission but took a plain one; "
                            "submitting without streams from now on")
        # The answer is the run, now queued; its hint says when the model's next turn is due.
        hint_ms = run.poll_after_ms
        return SubmitResult(SubmitOutcome.OK, None if hint_ms is None else hint_ms / 1000)

    async def _read_back(
        self, round_: Round, maybe_applied: bool, *, refused: ApiError | None = None
    ) -> SubmitOutcome | None:
        """What a failed or refused submission meant; None: the run still waits, try again."""
        run = await self._read(round_)
        if isinstance(run, SubmitOutcome) or run is None:
            return run
        outcome = _classify(run, round_, maybe_applied)
        if outcome is SubmitOutcome.ALREADY_SUBMITTED:
            # One read may be stale (a lagging replica behind the API): a second must agree
            # before the round is given up as answered elsewhere.
            again = await self._read(round_)
            if isinstance(again, SubmitOutcome) or again is None:
                return again
            outcome = _classify(again, round_, maybe_applied)
        if outcome is None and refused is not None:
            log.warning("submission refused while the run still waits", error=str(refused))
            return SubmitOutcome.REJECTED
        return outcome

    async def _read(self, round_: Round) -> Run | SubmitOutcome | None:
        """The run; REJECTED when it is gone; None when it cannot be read (try again)."""
        try:
            return await self._client.retrieve_run(round_.thread_id, round_.run_id)
        except NotFound:
            log.warning("the run is gone; its outputs cannot be delivered")
            return SubmitOutcome.REJECTED
        except ApiError as exc:
            log.debug("could not read the run back", error=str(exc))
            return None  # the API is down: keep the outputs and try again


def _classify(run: Run, round_: Round, maybe_applied: bool) -> SubmitOutcome | None:
    if run.status is RunStatus.EXPIRED:
        return SubmitOutcome.EXPIRED
    if run.status in (RunStatus.CANCELLED, RunStatus.CANCELLING):
        log.info("the run was cancelled before it took the outputs")
        return SubmitOutcome.CANCELLED
    if run.waits_for(round_) or run.status is RunStatus.UNKNOWN:
        return None  # waits, or a status that says nothing of the round: try again
    if maybe_applied:
        log.info("the answer to our submission was lost, but the run took the outputs")
        return SubmitOutcome.OK
    log.info("another worker submitted this round first", status=run.status.value)
    return SubmitOutcome.ALREADY_SUBMITTED


def _may_have_applied(exc: ApiError) -> bool:
    # Only a request that reached the API and whose answer we did not read can have been
    # applied: a dropped connection, a timeout, a 5xx from a gateway, a garbled answer.
    if isinstance(exc, ApiConnectionError):
        return not exc.lasting
    if isinstance(exc, ApiStatusError):
        return exc.status >= 500
    return isinstance(exc, ApiTimeout | BadAnswer)


def _tool_counts(outputs: Sequence[ToolOutput], shown: int = 10) -> dict[str, int]:
    """Calls per tool for the log line: the ``shown`` most called, the rest summed, so a round
    of a thousand made-up names is one short line (names come from the API)."""
    counts = Counter(o.tool[:64] for o in outputs).most_common()
    kept = dict(counts[:shown])
    if len(counts) > shown:
        kept["(others)"] = sum(n for _, n in counts[shown:])
    return kept

"""The path of one round: claim, dispatch, submit; and the next round when a stream brings it."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from structlog.contextvars import bound_contextvars

from worker.errors import CoordinationError
from worker.models import Round, SubmitOutcome
from worker.observability.tracing import NO_TRACING
from worker.rounds.approvals import ApprovalPolicy, count_decisions
from worker.rounds.cancellation import unless_run_moves_on
from worker.rounds.dispatch import Dispatcher
from worker.rounds.scope import Scope
from worker.rounds.submit import SubmitResult, Submitter
from worker.rounds.thread_metadata import ThreadMetadataCache

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from anyio.streams.memory import MemoryObjectReceiveStream

    from worker.api.clock import ApiClock
    from worker.api.protocol import RoundsApi
    from worker.config.settings import Settings
    from worker.handlers.registry import Registry
    from worker.models import Run
    from worker.observability.metrics import Metrics
    from worker.observability.tracing import Tracing
    from worker.service.claims import ClaimStore, Held
    from worker.service.status import StatusBoard

__all__ = ["RUN_ENDED", "Pipeline"]

# What take and follow return instead of a delay when the run is known to have ended.
RUN_ENDED = math.inf

log = structlog.get_logger("worker.rounds.pipeline")


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The stages a round passes through, wired once per run of the worker."""

    client: RoundsApi
    claims: ClaimStore
    dispatcher: Dispatcher
    submitter: Submitter
    clock: ApiClock
    metrics: Metrics
    cancel_check_interval_s: float
    retry_claim_s: float  # when to look again at a round that could not be claimed
    max_concurrent_rounds: int = 64
    scope: Scope | None = None  # a streamed round outside it goes back to the poller
    tracing: Tracing = NO_TRACING
    board: StatusBoard | None = None
    approvals: ApprovalPolicy | None = None  # answers approval rounds (Azure's MCP calls)

    @classmethod
    def build(cls, client: RoundsApi, claims: ClaimStore, registry: Registry,
              settings: Settings, metrics: Metrics, clock: ApiClock,
              resources: Mapping[type[Any], object] | None = None, *,
              scope: Scope | None = None, tracing: Tracing | None = None,
              board: StatusBoard | None = None,
              approvals: ApprovalPolicy | None = None) -> Pipeline:
        """The stages as the settings configure them; ``resources`` are the started ones."""
        thread_metadata = ThreadMetadataCache(client.retrieve_thread_metadata,
                                              settings.tools.thread_metadata_ttl_s)
        tracing = tracing or NO_TRACING
        return cls(
            client, claims,
            Dispatcher(registry, settings.tools, metrics,
                       log_arguments=settings.logging.log_arguments, resources=resources,
                       thread_metadata=thread_metadata.get, tracing=tracing),
            Submitter(client, metrics, window_s=settings.tools.submit_window_s),
            clock, metrics,
            cancel_check_interval_s=settings.watch.cancel_check_interval_s,
            retry_claim_s=settings.watch.active_poll_interval_s,
            max_concurrent_rounds=settings.tools.max_concurrent_rounds,
            scope=scope or Scope.from_settings(settings, (spec.name for spec in registry)),
            tracing=tracing, board=board,
            approvals=approvals or ApprovalPolicy.from_settings(settings),
        )

    def _serves(self, run: Run) -> bool:
        return self.scope is None or self.scope.leave_reason(run) is None

    async def serve(
        self, receive: MemoryObjectReceiveStream[Round],
        round_finished: Callable[[Round, float | None], None], *, in_flight: set[Round],
        abandoned: list[Round], draining: Callable[[], bool],
    ) -> None:
        """Take every round the poller sends, at most ``max_concurrent_rounds`` at once; tell
        ``round_finished`` when to look at each run again."""
        slots = anyio.Semaphore(self.max_concurrent_rounds)

        async def take(round_: Round) -> None:
            next_poll_s: float | None = self.retry_claim_s
            try:
                next_poll_s = await self.follow(round_, in_flight=in_flight,
                                                abandoned=abandoned, draining=draining)
            finally:
                slots.release()
                round_finished(round_, next_poll_s)

        async with receive, anyio.create_task_group() as rounds:
            async for round_ in receive:
                await slots.acquire()
                rounds.start_soon(take, round_)

    async def follow(
        self, round_: Round, *, in_flight: set[Round], abandoned: list[Round],
        draining: Callable[[], bool],
    ) -> float | None:
        """The round, then the run's next rounds while streams bring them.

        Returns when the poller should look at the run again (None: now; ``RUN_ENDED``: the
        run ended, only its thread is left to watch). ``in_flight`` holds
        the round being taken; one cancelled half-way (a hurried shutdown) goes to
        ``abandoned``.
        """
        current: Round | None = round_
        next_poll_s: float | None = None
        found_by = "poll"  # the poller found the first round; streams bring the next ones
        while current is not None:
            in_flight.add(current)
            try:
                following, next_poll_s = await self.take(current, follow=not draining(),
                                                         found_by=found_by)
            except anyio.get_cancelled_exc_class():
                abandoned.append(current)
                raise
            finally:
                in_flight.discard(current)
            if following is not None and draining():
                # The signal came while this round ran: the next round is left for the next
                # worker, which finds it by polling.
                log.info("draining: leaving the run's next round to the next worker")
                following = None
            current, found_by = following, "stream"
        return next_poll_s

    async def take(self, round_: Round, *, follow: bool,
                   found_by: str = "poll") -> tuple[Round | None, float | None]:
        """Claim, answer and submit one round.

        Returns the run's next round when the submission's stream brought it (and ``follow``),
        and otherwise when the poller should look at the run again (as ``follow``).
        """
        with (bound_contextvars(thread_id=round_.thread_id, run_id=round_.run_id),
              self.tracing.round(round_, found_by=found_by) as traced):
            try:
                async with self.claims.hold(round_) as held:
                    traced.claimed(held is not None)
                    if self.board is not None:
                        self.board.claimed(held is not None)
                    if held is None:  # another replica (or a stale read) has it
                        return None, self.retry_claim_s
                    result = await (self._approve(round_) if round_.approval_calls
                                    else self._answer(round_, held))
                    held.outcome = result.outcome
                    traced.outcome(result.outcome.value)
            except CoordinationError as exc:
                log.warning("could not claim the round; trying again", error=str(exc))
                return None, self.retry_claim_s
        run = result.next_run
        if run is not None and run.status.is_terminal:
            return None, RUN_ENDED  # the stream saw the run end: nothing left to look at
        if run is None or not run.wants_tool_outputs or not follow or not self._serves(run):
            return None, result.poll_after_s
        if {c.id for c in run.tool_calls} == {c.id for c in round_.tool_calls}:
            # Some servers' streams replay the round just answered: not a round found.
            log.debug("the submission's stream showed the round just answered; ignored")
            return None, result.poll_after_s
        self.metrics.rounds_found.labels("stream").inc()
        return Round.from_run(run, anyio.current_time(), api_now=self.clock.now()), None

    async def _approve(self, round_: Round) -> SubmitResult:
        """Send the [approvals] rules' answers to an approval round; no handler runs."""
        approvals = None if self.approvals is None else self.approvals.approvals(round_)
        if approvals is None:
            return SubmitResult(SubmitOutcome.REJECTED)  # not ours to answer; the poller leaves it
        result = await self.submitter.submit_approvals(round_, approvals)
        if result.outcome is SubmitOutcome.OK:
            count_decisions(approvals, self.metrics)
        return result

    async def _answer(self, round_: Round, held: Held) -> SubmitResult:
        """Dispatch (unless outputs were kept from an earlier try), then submit."""
        outputs = held.saved
        if outputs is None:
            answered = await unless_run_moves_on(
                functools.partial(self.dispatcher.run, round_), self.client, round_,
                interval_s=self.cancel_check_interval_s,
            )
            if isinstance(answered, SubmitOutcome):
                self.submitter.record_abandoned(round_, answered)
                if self.board is not None:
                    self.board.round_done(round_, (), answered.value)
                return SubmitResult(answered)
            outputs = answered
            await held.keep(outputs)
        else:
            log.info("submitting outputs kept from an earlier try; the handlers do not run")
        with self.tracing.submit(round_) as submitting:
            result = await self.submitter.submit(round_, outputs)
            submitting.outcome(result.outcome.value)
        if self.board is not None:
            self.board.round_done(round_, outputs, result.outcome.value)
        return result

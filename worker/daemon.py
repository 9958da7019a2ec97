"""Worker: wires client, poller, dispatcher, submitter and server; SIGTERM or SIGHUP drains."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import structlog
from structlog.contextvars import bound_contextvars

from .backends import build_profile
from .budget import RequestBudget
from .cancellation import unless_run_moves_on
from .claims import ClaimStore, Held, LocalClaims, RedisClaims
from .client import ApiClient
from .clock import ApiClock
from .dispatch import Dispatcher
from .errors import CoordinationError
from .health import Health
from .intake import RedisIntake
from .metrics import Metrics
from .models import Round, SubmitOutcome
from .poller import Poller
from .probe import check_access, keep_health
from .server import Server
from .submit import SubmitResult, Submitter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.streams.memory import MemoryObjectReceiveStream

    from .backends import BackendProfile
    from .config import Settings
    from .registry import Registry

__all__ = ["Worker"]

log = structlog.get_logger("worker.daemon")


def replica_name() -> str:
    """This process among the replicas: host and pid, as the claims and the intake see it."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class _Spine:
    """The stages a round passes through, wired once per run."""

    client: ApiClient
    claims: ClaimStore
    dispatcher: Dispatcher
    submitter: Submitter
    poller: Poller


class Worker:
    """The daemon: finds requires_action rounds, answers them, submits each once."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        metrics: Metrics | None = None,
        profile: BackendProfile | None = None,
    ) -> None:
        self._profile = profile or build_profile(settings.api, settings.api_key)
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.registry = registry
        watch = settings.watch
        self.health = Health(window_s=max(3 * watch.idle_poll_interval_s, 30.0),
                             stall_s=3 * watch.idle_poll_interval_s + 10)
        self.clock = ApiClock()
        self._rounds: anyio.CancelScope | None = None
        self._in_flight: set[Round] = set()
        self._abandoned: list[Round] = []
        self.server: Server | None = None
        self.poller: Poller | None = None
        self.metrics.ready.set_function(lambda: float(self.health.readiness()[0]))
        self.metrics.clock_offset.set_function(lambda: self.clock.offset_s)

    @property
    def abandoned_runs(self) -> list[str]:
        """Runs whose rounds were given up unsubmitted (a second signal, the drain timeout)."""
        return sorted({r.run_id for r in self._abandoned})

    async def run(
        self, *, until_idle: bool = False,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until SIGTERM/SIGINT/SIGHUP, or with ``until_idle`` until no watched run is active.

        Afterwards ``abandoned_runs`` names the runs a hurried shutdown left unsubmitted.

        Reports through ``task_status`` once it polls (and its server listens), so that
        ``await tg.start(worker.run)`` returns when the worker is up.

        Raises:
            AuthError: the API refused the key at start.
            ConfigError: the API refused the first request, or Redis support is missing.
        """
        budget = RequestBudget(self.settings.api.max_requests_per_s)
        async with (
            ApiClient(self._profile, self.settings.api, self.metrics, budget=budget,
                      clock=self.clock, health=self.health) as client,
            self._claim_store() as claims,
        ):
            await check_access(client, self.settings.watch)
            send, receive = anyio.create_memory_object_stream[Round](
                max_buffer_size=self.settings.tools.max_concurrent_rounds
            )
            self.poller = Poller(client, self.settings.watch, self.metrics,
                                 health=self.health, clock=self.clock)
            spine = _Spine(
                client, claims,
                Dispatcher(self.registry, self.settings.tools, self.metrics,
                           log_arguments=self.settings.logging.log_arguments),
                Submitter(client, self.metrics, window_s=self.settings.tools.submit_window_s),
                self.poller,
            )
            async with anyio.create_task_group() as tg:
                await self._start_edges(tg, spine)
                tg.start_soon(functools.partial(self.poller.run, send, until_idle=until_idle))
                log.info("worker started", tools=[t.name for t in self.registry],
                         threads=len(self.settings.watch.threads))
                task_status.started()
                await self._process_rounds(receive, spine)
                tg.cancel_scope.cancel()
        log.info("worker stopped")

    async def _start_edges(self, tg: anyio.abc.TaskGroup, spine: _Spine) -> None:
        """The HTTP server, the signal handler, health upkeep and the Redis intake."""
        if self.settings.server.enabled:
            self.server = Server(self.settings.server, self.metrics, self.health.readiness,
                                 liveness=self.health.liveness, watch=spine.poller.watch)
            await tg.start(self.server.serve)
        await tg.start(self._watch_signals)
        tg.start_soon(keep_health, spine.client, self.settings.watch, self.health, spine.claims,
                      self.clock)
        if self.settings.intake.redis_stream:
            intake = RedisIntake.from_settings(
                self.settings.intake, watch=spine.poller.watch, consumer=replica_name(),
                metrics=self.metrics,
            )
            tg.start_soon(intake.run)

    @contextlib.asynccontextmanager
    async def _claim_store(self) -> AsyncIterator[ClaimStore]:
        coordination = self.settings.coordination
        store: ClaimStore
        if coordination.backend == "redis":
            store = RedisClaims.from_url(
                coordination.redis_url, owner=replica_name(), lease_s=coordination.lease_s,
                prefix=coordination.key_prefix,
            )
        else:
            store = LocalClaims()
        try:
            yield store
        finally:
            with anyio.CancelScope(shield=True):
                await store.aclose()

    async def _process_rounds(self, receive: MemoryObjectReceiveStream[Round],
                              spine: _Spine) -> None:
        self._rounds = anyio.CancelScope()
        with self._rounds:
            slots = anyio.Semaphore(self.settings.tools.max_concurrent_rounds)
            async with receive, anyio.create_task_group() as rounds:
                async for round_ in receive:
                    await slots.acquire()
                    rounds.start_soon(self._process_round, round_, spine, slots)
        if self._abandoned:
            log.error("stopped before these rounds were submitted; a restarted worker takes them",
                      runs=sorted(r.run_id for r in self._abandoned))

    async def _process_round(self, round_: Round, spine: _Spine, slots: anyio.Semaphore) -> None:
        """Take the round, and the run's next rounds while streams bring them; then the poller
        looks at the thread again."""
        current = round_
        next_poll_s: float | None = self.settings.watch.active_poll_interval_s
        try:
            following: Round | None = round_
            while following is not None:
                current = following
                self._in_flight.add(current)
                try:
                    following, next_poll_s = await self._take(current, spine)
                finally:
                    self._in_flight.discard(current)
        except anyio.get_cancelled_exc_class():
            self._abandoned.append(current)
            raise
        finally:
            slots.release()
            spine.poller.round_finished(current, next_poll_s)

    async def _take(self, round_: Round, spine: _Spine) -> tuple[Round | None, float | None]:
        """Claim, answer and submit one round; returns the next round if a stream brought it."""
        with bound_contextvars(thread_id=round_.thread_id, run_id=round_.run_id):
            try:
                async with spine.claims.hold(round_) as held:
                    if held is None:  # another replica (or a stale read) has it
                        return None, self.settings.watch.active_poll_interval_s
                    result = await self._answer(round_, held, spine)
                    held.outcome = result.outcome
            except CoordinationError as exc:
                log.warning("could not claim the round; trying again", error=str(exc))
                return None, self.settings.watch.active_poll_interval_s
        run = result.next_run
        if run is None or not run.wants_tool_outputs or self.health.draining:
            return None, result.poll_after_s
        self.metrics.rounds_found.labels("stream").inc()
        return Round.from_run(run, anyio.current_time(), api_now=self.clock.now()), None

    async def _answer(self, round_: Round, held: Held, spine: _Spine) -> SubmitResult:
        """Dispatch (unless outputs were kept from an earlier try), then submit."""
        outputs = held.saved
        if outputs is None:
            answered = await unless_run_moves_on(
                functools.partial(spine.dispatcher.run, round_), spine.client, round_,
                interval_s=self.settings.watch.cancel_check_interval_s,
            )
            if isinstance(answered, SubmitOutcome):
                spine.submitter.record_abandoned(round_, answered)
                return SubmitResult(answered)
            outputs = answered
            await held.keep(outputs)
        else:
            log.info("submitting outputs kept from an earlier try; the handlers do not run")
        return await spine.submitter.submit(round_, outputs)

    async def _watch_signals(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # SIGHUP too: a closed terminal or a supervisor's reload would otherwise kill the
        # worker outright, rounds and all; there is nothing to reload, so it drains.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if self.health.draining:
                    log.warning("second signal: stopping now", signal=signum.name)
                    if self._rounds is not None:
                        self._rounds.cancel()
                    return
                drain_s = self.settings.shutdown.drain_timeout_s
                log.info("draining: finishing rounds in flight", signal=signum.name,
                         rounds=len(self._in_flight), drain_timeout_s=drain_s)
                self.stop()
                if self._rounds is not None:
                    self._rounds.deadline = anyio.current_time() + drain_s

    def stop(self) -> None:
        """Stop taking new rounds and return from ``run`` once the rounds in flight are done."""
        self.health.draining = True
        if self.poller is not None:
            self.poller.stop()

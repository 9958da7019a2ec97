"""Worker: wires client, poller, dispatcher, submitter and server; SIGTERM or SIGHUP drains."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from structlog.contextvars import bound_contextvars

from .backends import build_profile
from .claims import ClaimStore, LocalClaims, RedisClaims
from .client import ApiClient
from .dispatch import Dispatcher
from .errors import ApiError, ApiStatusError, AuthError, ConfigError, CoordinationError
from .intake import RedisIntake
from .metrics import Metrics
from .models import Round
from .poller import Poller
from .server import Server
from .submit import Submitter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .backends import BackendProfile
    from .config import Settings
    from .registry import Registry

__all__ = ["Worker"]

log = structlog.get_logger("worker.daemon")

AUTH_FAILURES_NOT_READY = 3
POLL_FAILURES_NOT_READY = 10


def replica_name() -> str:
    """This process among the replicas: host and pid, as the claims and the intake see it."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class _Spine:
    """The stages a round passes through, wired once per run."""

    dispatcher: Dispatcher
    submitter: Submitter
    claims: ClaimStore


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
        self._rounds: anyio.CancelScope | None = None
        self._in_flight: set[Round] = set()
        self._abandoned: list[Round] = []
        self._draining = False
        self.server: Server | None = None
        self.poller: Poller | None = None
        self.metrics.ready.set_function(self._ready_value)

    @property
    def abandoned_runs(self) -> list[str]:
        """Runs whose rounds were given up unsubmitted (a second signal, the drain timeout)."""
        return sorted({r.run_id for r in self._abandoned})

    async def run(self, *, until_idle: bool = False) -> None:
        """Run until SIGTERM/SIGINT/SIGHUP, or with ``until_idle`` until no watched run is active.

        Afterwards ``abandoned_runs`` names the runs a hurried shutdown left unsubmitted.

        Raises:
            AuthError: the API refused the key at start.
            ConfigError: the API refused the first request, or Redis support is missing.
        """
        async with (
            ApiClient(self._profile, self.settings.api, self.metrics) as client,
            self._claim_store() as claims,
        ):
            await self._check_access(client)
            send, receive = anyio.create_memory_object_stream[Round](
                max_buffer_size=self.settings.tools.max_concurrent_rounds
            )
            self.poller = Poller(client, self.settings.watch, self.metrics, claims)
            spine = _Spine(
                Dispatcher(self.registry, self.settings.tools, self.metrics,
                           log_arguments=self.settings.logging.log_arguments),
                Submitter(client, self.metrics),
                claims,
            )
            async with anyio.create_task_group() as tg:
                await self._start_edges(tg, self.poller)
                tg.start_soon(functools.partial(self.poller.run, send, until_idle=until_idle))
                log.info("worker started", tools=[t.name for t in self.registry],
                         threads=len(self.settings.watch.threads))
                await self._process_rounds(receive, spine)
                tg.cancel_scope.cancel()
        log.info("worker stopped")

    async def _start_edges(self, tg: anyio.abc.TaskGroup, poller: Poller) -> None:
        """The HTTP server, the signal handler and the Redis intake, as configured."""
        if self.settings.server.enabled:
            self.server = Server(
                self.settings.server, self.metrics, self._readiness, watch=poller.watch
            )
            await tg.start(self.server.serve)
        await tg.start(self._watch_signals)
        if self.settings.intake.redis_stream:
            intake = RedisIntake.from_settings(
                self.settings.intake, watch=poller.watch, consumer=replica_name()
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

    async def _process_rounds(self, receive: Any, spine: _Spine) -> None:
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
        """Claimed round -> dispatch -> one submission -> settle the claim."""
        self._in_flight.add(round_)
        next_poll_s: float | None = None
        try:
            with bound_contextvars(thread_id=round_.thread_id, run_id=round_.run_id):
                async with self._lease(round_, spine.claims):
                    outputs = await spine.dispatcher.run(round_)
                    result = await spine.submitter.submit(round_, outputs)
                next_poll_s = result.poll_after_s
                await self._settle(round_, result.outcome, spine.claims)
        except anyio.get_cancelled_exc_class():
            self._abandoned.append(round_)
            raise
        finally:
            self._in_flight.discard(round_)
            slots.release()
            assert self.poller is not None  # noqa: S101 - set before rounds flow
            self.poller.round_finished(round_, next_poll_s)

    @contextlib.asynccontextmanager
    async def _lease(self, round_: Round, claims: ClaimStore) -> AsyncIterator[None]:
        """Renew the round's claim while its handlers run, at a third of the lease."""
        if not claims.renews:
            yield
            return

        async def renew_forever() -> None:
            while True:
                await anyio.sleep(self.settings.coordination.lease_s / 3)
                try:
                    if not await claims.renew(round_):
                        log.warning("lost the claim on this round; another replica may take it")
                except CoordinationError as exc:
                    log.warning("could not renew the claim", error=str(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(renew_forever)
            yield
            tg.cancel_scope.cancel()

    async def _settle(self, round_: Round, outcome: str, claims: ClaimStore) -> None:
        try:
            if outcome == "failed":
                # Not delivered, and the run may still wait: let the next poll take it again.
                await claims.release(round_)
            else:
                await claims.done(round_)
        except CoordinationError as exc:
            log.warning("could not settle the claim; its lease will run out", error=str(exc))

    async def _check_access(self, client: ApiClient) -> None:
        """Fail at start when the API refuses us; a network hiccup only warns.

        Raises:
            AuthError: the key or token is refused.
            ConfigError: the API refuses the request itself (wrong base_url or api_version).
        """
        try:
            await client.list_assistants(limit=1)
        except AuthError:
            raise
        except ApiStatusError as exc:
            if 400 <= exc.status < 500 and exc.status != 429:
                raise ConfigError(
                    f"the API refused the first request ({exc}); check base_url, backend "
                    "and api_version",
                    key="api",
                ) from exc
            log.warning("could not check API access at start; carrying on", error=str(exc))
        except ApiError as exc:
            log.warning("could not check API access at start; carrying on", error=str(exc))

    async def _watch_signals(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # SIGHUP too: a closed terminal or a supervisor's reload would otherwise kill the
        # worker outright, rounds and all; there is nothing to reload, so it drains.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if self._draining:
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
        self._draining = True
        if self.poller is not None:
            self.poller.stop()

    def _ready_value(self) -> float:
        # Read at scrape time, in the thread that renders /metrics.
        return float(self._readiness()[0])

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        poller = self.poller
        if poller is None:
            return False, {"reason": "starting"}
        facts: dict[str, Any] = {
            "in_flight_rounds": len(self._in_flight),
            "consecutive_poll_failures": poller.consecutive_failures,
        }
        stalled_s = time.monotonic() - poller.heartbeat
        # The loop wakes at least once per idle interval; far longer means it is stuck.
        if stalled_s > 3 * self.settings.watch.idle_poll_interval_s + 10:
            return False, {"reason": "the poll loop is stuck", "stalled_s": round(stalled_s, 1),
                           **facts}
        if poller.auth_failures >= AUTH_FAILURES_NOT_READY:
            return False, {"reason": "the API refuses the key", **facts}
        if poller.consecutive_failures >= POLL_FAILURES_NOT_READY:
            return False, {"reason": "the API cannot be reached", **facts}
        if self._draining:
            return False, {"reason": "draining for shutdown", **facts}
        return True, facts

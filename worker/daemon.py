"""Worker: wires client, poller, dispatcher, submitter and server; SIGTERM drains."""

from __future__ import annotations

import functools
import signal
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from structlog.contextvars import bound_contextvars

from .backends import build_profile
from .claims import LocalClaims
from .client import ApiClient
from .dispatch import Dispatcher
from .errors import ApiError, ApiStatusError, AuthError, ConfigError
from .metrics import Metrics
from .models import Round
from .poller import Poller
from .server import Server
from .submit import Submitter

if TYPE_CHECKING:
    from .backends import BackendProfile
    from .config import Settings
    from .registry import Registry

__all__ = ["Worker"]

log = structlog.get_logger("worker.daemon")

AUTH_FAILURES_NOT_READY = 3
POLL_FAILURES_NOT_READY = 10


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
        self._claims = LocalClaims()
        self._draining = False
        self.server: Server | None = None
        self.poller: Poller | None = None

    async def run(self, *, until_idle: bool = False) -> None:
        """Run until SIGTERM/SIGINT, or with ``until_idle`` until no watched run is active.

        Raises:
            AuthError: the API refused the key at start.
        """
        async with ApiClient(self._profile, self.settings.api, self.metrics) as client:
            await self._check_access(client)
            send, receive = anyio.create_memory_object_stream[Round](
                max_buffer_size=self.settings.tools.max_concurrent_rounds
            )
            self.poller = Poller(client, self.settings.watch, self.metrics, self._claims)
            dispatcher = Dispatcher(self.registry, self.settings.tools, self.metrics,
                                    log_arguments=self.settings.logging.log_arguments)
            submitter = Submitter(client, self.metrics)
            async with anyio.create_task_group() as tg:
                if self.settings.server.enabled:
                    self.server = Server(
                        self.settings.server.host, self.settings.server.port, self.metrics,
                        self._readiness,
                    )
                    await tg.start(self.server.serve)
                await tg.start(self._watch_signals)
                tg.start_soon(functools.partial(self.poller.run, send, until_idle=until_idle))
                log.info("worker started", tools=[t.name for t in self.registry],
                         threads=len(self.settings.watch.threads))
                await self._process_rounds(receive, dispatcher, submitter)
                tg.cancel_scope.cancel()
        log.info("worker stopped")

    async def _process_rounds(self, receive: Any, dispatcher: Dispatcher, submitter: Submitter) -> None:
        self._rounds = anyio.CancelScope()
        with self._rounds:
            slots = anyio.Semaphore(self.settings.tools.max_concurrent_rounds)
            async with receive, anyio.create_task_group() as rounds:
                async for round_ in receive:
                    await slots.acquire()
                    rounds.start_soon(self._process_round, round_, dispatcher, submitter, slots)
        if self._abandoned:
            log.error("stopped before these rounds were submitted; a restarted worker takes them",
                      runs=sorted(r.run_id for r in self._abandoned))

    async def _process_round(
        self, round_: Round, dispatcher: Dispatcher, submitter: Submitter,
        slots: anyio.Semaphore,
    ) -> None:
        self._in_flight.add(round_)
        try:
            with bound_contextvars(thread_id=round_.thread_id, run_id=round_.run_id):
                outputs = await dispatcher.run(round_)
                if await submitter.submit(round_, outputs) == "failed":
                    # Not delivered, and the run may still wait: let the next poll take it again.
                    self._claims.release(round_.run_id, round_.key)
        except anyio.get_cancelled_exc_class():
            self._abandoned.append(round_)
            raise
        finally:
            self._in_flight.discard(round_)
            slots.release()
            assert self.poller is not None  # noqa: S101 - set before rounds flow
            self.poller.round_finished(round_)

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
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
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

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        poller = self.poller
        if poller is None:
            return False, {"reason": "starting"}
        facts: dict[str, Any] = {
            "in_flight_rounds": len(self._in_flight),
            "consecutive_poll_failures": poller.consecutive_failures,
        }
        stalled_s = anyio.current_time() - poller.heartbeat
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

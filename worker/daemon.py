"""Worker: wires client, poller, dispatcher, submitter and server; a round is claim, dispatch, submit."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from .approvals import ApprovalPolicy
from .backends import build_profile
from .budget import RequestBudget
from .claims import open_claim_store
from .client import ApiClient
from .clock import ApiClock
from .health import Health
from .intake import RedisIntake
from .metrics import Metrics
from .models import Round
from .poller import Poller
from .probe import check_access, keep_health
from .redis_connect import replica_name
from .resources import open_resources
from .rounds import Pipeline
from .scope import Scope, unknown_policy
from .server import Server
from .shutdown import Shutdown

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.streams.memory import MemoryObjectReceiveStream

    from .backends import BackendProfile
    from .claims import ClaimStore
    from .config import Settings
    from .registry import Registry

__all__ = ["Worker"]

log = structlog.get_logger("worker.daemon")


class Worker:
    """The daemon: finds requires_action rounds, answers them, submits each once."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        metrics: Metrics | None = None,
        profile: BackendProfile | None = None,
        resources: Mapping[type[Any], object] | None = None,
    ) -> None:
        """``resources`` replace the ``@resource`` of their type (tests pass fakes this way)."""
        self._resource_overrides = resources
        self._profile = profile or build_profile(settings.api, settings.api_key)
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.registry = registry
        self.health = Health.for_interval(settings.watch.idle_poll_interval_s)
        self.clock = ApiClock()
        self._in_flight: set[Round] = set()
        self._shutdown = Shutdown(settings.shutdown.drain_timeout_s, stop=self.stop,
                                  in_flight=lambda: len(self._in_flight))
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

        ``await tg.start(worker.run)`` returns once it polls (and its server listens).

        Raises:
            ResourceError: a ``@resource`` failed to start.
            AuthError: the API refused the key at start.
            ConfigError: the API refused the first request, or Redis support is missing.
        """
        budget = RequestBudget(self.settings.api.max_requests_per_s)
        async with (
            open_resources(self.registry.resource_types(),
                           self._resource_overrides) as resources,
            ApiClient(self._profile, self.settings.api, self.metrics, budget=budget,
                      clock=self.clock, health=self.health) as client,
            open_claim_store(self.settings.coordination, owner=replica_name()) as claims,
        ):
            await check_access(client, self.settings.watch)
            send, receive = anyio.create_memory_object_stream[Round](
                max_buffer_size=self.settings.tools.max_concurrent_rounds
            )
            poller = self.poller = Poller(
                client, self.settings.watch, self.metrics, health=self.health,
                clock=self.clock, scope=Scope.from_settings(self.settings, self._tool_names()),
                approvals=ApprovalPolicy.from_settings(self.settings))
            pipeline = Pipeline.build(client, claims, self.registry, self.settings,
                                      self.metrics, self.clock, resources)
            async with anyio.create_task_group() as tg:
                await self._start_edges(tg, client, claims, poller)
                tg.start_soon(functools.partial(poller.run, send, until_idle=until_idle))
                log.info("worker started", tools=self._tool_names(),
                         threads=len(self.settings.watch.threads),
                         assistants=list(self.settings.watch.assistants) or "all",
                         unknown_tools=unknown_policy(self.settings))
                task_status.started()
                await self._process_rounds(receive, pipeline, poller)
                tg.cancel_scope.cancel()
        log.info("worker stopped")

    async def _start_edges(self, tg: anyio.abc.TaskGroup, client: ApiClient,
                           claims: ClaimStore, poller: Poller) -> None:
        """The HTTP server, the signal handler, health upkeep and the Redis intake."""
        if self.settings.server.enabled:
            self.server = Server(self.settings.server, self.metrics, self.health.readiness,
                                 liveness=self.health.liveness, watch=poller.watch)
            await tg.start(self.server.serve)
        await tg.start(self._shutdown.watch_signals)
        tg.start_soon(keep_health, client, self.settings.watch, self.health, claims, self.clock)
        if self.settings.intake.redis_stream:
            tg.start_soon(RedisIntake.from_settings(
                self.settings.intake, watch=poller.watch, consumer=replica_name(),
                metrics=self.metrics, report=functools.partial(self.health.dependency, "intake"),
            ).run)

    async def _process_rounds(self, receive: MemoryObjectReceiveStream[Round],
                              pipeline: Pipeline, poller: Poller) -> None:
        with self._shutdown.rounds:
            slots = anyio.Semaphore(self.settings.tools.max_concurrent_rounds)
            async with receive, anyio.create_task_group() as rounds:
                async for round_ in receive:
                    await slots.acquire()
                    rounds.start_soon(self._process_round, round_, pipeline, poller, slots)
        if self._abandoned:
            log.error("stopped before these rounds were submitted; a restarted worker takes them",
                      runs=self.abandoned_runs)

    async def _process_round(self, round_: Round, pipeline: Pipeline, poller: Poller,
                             slots: anyio.Semaphore) -> None:
        next_poll_s: float | None = self.settings.watch.active_poll_interval_s
        try:
            next_poll_s = await pipeline.follow(round_, in_flight=self._in_flight,
                                                abandoned=self._abandoned,
                                                draining=lambda: self.health.draining)
        finally:
            slots.release()
            poller.round_finished(round_, next_poll_s)

    def _tool_names(self) -> list[str]:
        return [spec.name for spec in self.registry]

    def stop(self) -> None:
        """Stop taking new rounds and return from ``run`` once the rounds in flight are done."""
        self.health.draining = True
        if self.poller is not None:
            self.poller.stop()

"""Worker: wires client, poller, dispatcher, submitter and server; a round is claim, dispatch, submit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.api.backends import build_profile
from worker.api.clock import ApiClock
from worker.api.protocol import open_client
from worker.handlers.resources import open_resources
from worker.models import Round
from worker.observability.health import Health
from worker.observability.metrics import Metrics
from worker.observability.tracing import open_tracing
from worker.rounds.approvals import ApprovalPolicy
from worker.rounds.live import live_streams
from worker.rounds.pipeline import Pipeline
from worker.rounds.poller import Poller
from worker.rounds.scope import Scope
from worker.rounds.watchlist import open_watchlist
from worker.service.api_health import check_access
from worker.service.membership import Membership, open_coordination
from worker.service.shutdown import Shutdown
from worker.service.startup import start_edges
from worker.service.status import StatusBoard

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.api.backends import BackendProfile
    from worker.api.protocol import RoundsApi
    from worker.config.settings import Settings
    from worker.handlers.registry import Registry
    from worker.observability.tracing import Tracing
    from worker.service.claims import ClaimStore
    from worker.service.server import Server

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
        tracing: Tracing | None = None,
    ) -> None:
        """``resources`` replace ``@resource``s by type (fakes in tests); ConfigError: tracing
        is on without the ``[otel]`` extra."""
        self._resource_overrides = resources
        self.tracing = tracing or open_tracing(settings.tracing,
                                               log_arguments=settings.logging.log_arguments)
        self.status: StatusBoard | None = None
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
        async with (
            self._shutdown.guard(),  # signals from the first moment: a stop ends the start
            open_resources(self.registry.resource_types(), self._resource_overrides) as resources,
            open_client(self._profile, self.settings, self.metrics, clock=self.clock,
                        health=self.health) as client,
            open_coordination(self.settings, budget=client.budget) as (claims, members),
        ):
            await check_access(client, self.settings.watch)
            await self._serve(client, claims, members, resources, until_idle, task_status)
        if self._abandoned:
            log.error("stopped before these rounds were submitted; a restarted worker takes them",
                      runs=self.abandoned_runs)
        await self.tracing.aclose()
        log.info("worker stopped")

    async def _serve(self, client: RoundsApi, claims: ClaimStore, members: Membership,
                     resources: Mapping[type[Any], object], until_idle: bool,
                     task_status: anyio.abc.TaskStatus[None]) -> None:
        """Wire the stages, start the edges and the poller, and take rounds until told."""
        send, receive = anyio.create_memory_object_stream[Round](
            max_buffer_size=self.settings.tools.max_concurrent_rounds)
        scope = Scope.from_settings(self.settings, (t.name for t in self.registry))
        approvals = ApprovalPolicy.from_settings(self.settings)
        poller = self.poller = Poller(client, self.settings.watch, self.metrics, health=self.health,
                                      clock=self.clock, scope=scope, approvals=approvals,
                                      streams=live_streams(client), membership=members)
        self.status = StatusBoard.for_worker(self.settings, self.metrics, self.health,
                                             self._in_flight, lambda: poller.watched,
                                             client.budget, scope.tools)
        pipeline = Pipeline.build(client, claims, self.registry, self.settings, self.metrics,
                                  self.clock, resources, scope=scope, tracing=self.tracing,
                                  board=self.status, approvals=approvals)
        async with (send, receive, open_watchlist(self.settings, self.metrics, poller) as watchlist,
                    anyio.create_task_group() as tg):  # closed on a failed start too
            self.server = await start_edges(
                tg, self.settings, metrics=self.metrics, health=self.health, clock=self.clock,
                client=client, claims=claims, announce=watchlist.announcer,
                status=self.status.snapshot)
            tg.start_soon(lambda: poller.run(send, until_idle=until_idle))
            log.info("worker started", tools=[t.name for t in self.registry],
                     threads=poller.watched, **scope.facts())
            task_status.started()
            with self._shutdown.serving():
                await pipeline.serve(receive, poller.round_finished, in_flight=self._in_flight,
                                     abandoned=self._abandoned, draining=lambda: self.health.draining)
            tg.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop taking new rounds and return from ``run`` once the rounds in flight are done."""
        self.health.draining = True
        if self.poller is not None:
            self.poller.stop()

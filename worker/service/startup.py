"""The worker's edges: its HTTP server, health upkeep and the Redis intake."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import structlog

from worker.service.api_health import keep_health, nothing_watched
from worker.service.connections import connection_cap
from worker.service.intake import RedisIntake
from worker.service.redis_connection import replica_name
from worker.service.server import Server

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    import anyio.abc

    from worker.api.clock import ApiClock
    from worker.api.protocol import RoundsApi
    from worker.config.settings import Settings
    from worker.observability.health import Health
    from worker.observability.metrics import Metrics
    from worker.service.claims import ClaimStore
    from worker.service.intake import Watch
    from worker.service.watch_store import Source

__all__ = ["start_edges"]

log = structlog.get_logger("worker.service.startup")


async def start_edges(
    tg: anyio.abc.TaskGroup,
    settings: Settings,
    *,
    metrics: Metrics,
    health: Health,
    clock: ApiClock,
    client: RoundsApi,
    claims: ClaimStore,
    announce: Callable[[Source], Watch],
    status: Callable[[], dict[str, Any]] | None,
) -> Server | None:
    """Start every edge the settings ask for in ``tg``; returns the server, once it listens.

    ``announce(source)`` is the ``Watch`` of one way in (``Watchlist.announcer``).
    """
    server = None
    idle = nothing_watched(settings)
    if idle is not None:
        log.warning(idle)
    if settings.server.enabled:
        server = Server(settings.server, metrics, health.readiness, liveness=health.liveness,
                        watch=announce("announced"), webhook_watch=announce("webhook"),
                        status=status, max_connections=connection_cap(settings))
        await tg.start(server.serve)
    tg.start_soon(keep_health, client, settings.watch, health, claims, clock)
    if settings.intake.redis_stream:
        tg.start_soon(RedisIntake.from_settings(
            settings.intake, watch=announce("intake"), consumer=replica_name(),
            metrics=metrics,
            report=functools.partial(health.dependency, "intake"),
        ).run)
    return server

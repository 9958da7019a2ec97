"""What the worker asks the API about itself: access at start, and a probe when all is quiet.

Both use only what the worker needs anyway (a watched thread's runs, or the thread listing
when discovering), never an endpoint such as ``GET /assistants`` that a compatible server or a
gateway may not serve.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
import structlog

from worker.api.budget import Lane
from worker.errors import (
    ApiError,
    ApiStatusError,
    AuthError,
    ConfigError,
    CoordinationError,
    NotFound,
)

if TYPE_CHECKING:
    from worker.api.clock import ApiClock
    from worker.api.protocol import RoundsApi
    from worker.config.settings import WatchSettings
    from worker.observability.health import Health
    from worker.service.claims import ClaimStore

__all__ = ["check_access", "keep_health"]

log = structlog.get_logger("worker.service.api_health")

# A thread id nobody has: its runs answer 404, which proves the API is there and takes the key.
PROBE_THREAD = "thread_toolworker_probe"
CLOCK_OFFSET_WARN_S = 5.0


async def _ask(client: RoundsApi, watch: WatchSettings) -> None:
    if watch.discover:
        await client.list_threads(limit=1)
    else:
        watched = watch.threads or watch.sessions
        thread_id = watched[0] if watched else PROBE_THREAD
        await client.list_runs(thread_id, limit=1, lane=Lane.IDLE, retries=0)


async def check_access(client: RoundsApi, watch: WatchSettings) -> None:
    """Fail at start when the API refuses us; a network hiccup or a missing thread only warns.

    Raises:
        AuthError: the key or token is refused.
        ConfigError: the API refuses the request itself (wrong base_url or api_version).
    """
    try:
        await _ask(client, watch)
    except AuthError:
        raise
    except NotFound as exc:
        if watch.discover:  # listing threads is what the worker does: 404 is a wrong URL
            raise ConfigError(f"the API does not serve the thread listing ({exc}); check "
                              "base_url and backend", key="api.base_url") from exc
        if watch.threads or watch.sessions:
            log.warning("the first watched thread is not found; check it and base_url",
                        thread_id=(watch.threads or watch.sessions)[0])
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


async def keep_health(
    client: RoundsApi,
    watch: WatchSettings,
    health: Health,
    claims: ClaimStore,
    clock: ApiClock,
) -> None:
    """Keep readiness true to life: probe the API when nothing else asked it lately, ping
    the coordination store, and say when the API's clock is far from ours."""
    warned_offset = 0.0
    while True:
        await anyio.sleep(health.window_s / 3)
        if health.since_answer_s() > health.window_s / 3:
            with contextlib.suppress(ApiError):  # the client told health what failed
                await _ask(client, watch)
        try:
            await claims.ping()
            health.dependency("coordination", None)
        except CoordinationError as exc:
            health.dependency("coordination", str(exc))
        if abs(clock.offset_s - warned_offset) >= CLOCK_OFFSET_WARN_S:
            warned_offset = clock.offset_s
            log.warning("the API's clock differs from ours; deadlines follow the API's",
                        offset_s=round(clock.offset_s, 1))

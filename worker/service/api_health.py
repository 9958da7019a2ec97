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
    from collections.abc import Sequence

    from worker.api.clock import ApiClock
    from worker.api.protocol import RoundsApi
    from worker.config.settings import Settings, WatchSettings
    from worker.observability.health import Health
    from worker.service.claims import ClaimStore

__all__ = [
    "NOT_FOUND_HINT", "PROBE_THREAD", "check_access", "keep_health", "nothing_watched",
    "threads_not_found",
]

log = structlog.get_logger("worker.service.api_health")

# A thread id nobody has: its runs answer 404, which proves the API is there and takes the key.
PROBE_THREAD = "thread_toolworker_probe"
CLOCK_OFFSET_WARN_S = 5.0
# How many watched threads the start (and check-config) reads before it says "not found".
THREADS_SAMPLED = 3
NOT_FOUND_HINT = ("the API answers 404 (not found) for every watched thread it was asked about; "
                  "is base_url right (a compatible server may serve under /api/v1, not /v1), "
                  "and do the threads exist for this key?")


def nothing_watched(settings: Settings) -> str | None:
    """Why the worker would watch nothing and idle, or None when something can bring threads."""
    if settings.watch.threads or settings.watch.sessions or settings.watch.discover \
            or settings.intake.redis_stream or settings.server.webhook_secret is not None \
            or settings.server.watch_token is not None:
        return None
    key = "sessions" if settings.api.backend == "agents" else "threads"
    return (f"nothing is watched: [watch] {key} is empty and no way in is on (discover, "
            "[intake] redis_stream, [server] watch_token for POST /v1/watch, or webhook_secret); "
            "the worker idles")


async def threads_not_found(client: RoundsApi, threads: Sequence[str]) -> tuple[int, int]:
    """(not found, asked) for the first few ``threads``; stops at the first one found.

    Raises:
        ApiError: a failure other than 404, such as a refused key.
    """
    asked = 0
    for thread_id in threads[:THREADS_SAMPLED]:
        asked += 1
        try:
            await client.list_runs(thread_id, limit=1, lane=Lane.IDLE, retries=0)
        except NotFound:
            continue
        return asked - 1, asked
    return asked, asked


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
            await _say_if_none_found(client, watch)
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


async def _say_if_none_found(client: RoundsApi, watch: WatchSettings) -> None:
    """The first thread is not found: if the next few are not either, the URL is suspect."""
    try:
        watched = watch.threads or watch.sessions
        missing, asked = await threads_not_found(client, watched)
    except ApiError:
        return  # the poller meets it again, and says so
    if missing == asked:
        log.warning(NOT_FOUND_HINT, threads=list(watched[:asked]))
    else:
        log.warning("the first watched thread is not found; check it", thread_id=watched[0])


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

"""``tool-worker check-config``: what the configuration holds, and whether its parts answer."""

from __future__ import annotations

import functools
import importlib.util
from typing import TYPE_CHECKING

import anyio

from worker.api.agents import SessionsClient
from worker.api.backends import build_profile
from worker.api.client import ApiClient
from worker.config.loading import api_key_source
from worker.config.secret_files import secret_file_warnings
from worker.errors import ApiError, AuthError
from worker.observability.metrics import Metrics
from worker.observability.redaction import redact_text
from worker.service.api_health import (
    NOT_FOUND_HINT,
    PROBE_THREAD,
    nothing_watched,
    threads_not_found,
)
from worker.service.redis_connection import ping_redis
from worker.service.watch_store import default_state_path, store_choice

if TYPE_CHECKING:
    from worker.config.settings import Settings
    from worker.handlers.registry import Registry

__all__ = ["report_config"]


def report_config(settings: Settings, registry: Registry, source: str, *, ask_api: bool) -> None:
    """Print what the configuration from ``source`` holds; ping Redis and, with ``ask_api``,
    read a few watched threads.

    Raises:
        ConfigError: the azure extra is missing for Entra ID.
        AuthError: the API refuses the key.
    """
    api = settings.api
    if api.backend == "azure" and api.azure_auth == "entra" and not _has_azure_identity():
        # Found now, not at the first request of a deployed worker.
        build_profile(api, None)  # raises the ConfigError that says what to install
    print(f"configuration OK: {source}")
    credentials = "credentials" if api.azure_auth == "entra" and api.backend == "azure" else "key"
    print(f"  api:     {api.base_url} ({api.backend}; {credentials} from "
          f"{api_key_source(settings)})")
    idle = nothing_watched(settings)
    what = "session(s)" if api.backend == "agents" else "thread(s)"
    print(f"  watch:   {len(settings.watch.threads) + len(settings.watch.sessions)} {what}"
          + (f"; warning: {idle}" if idle is not None else ""))
    print(f"  store:   {_watch_store(settings)}")
    print(f"  tools:   {', '.join(t.name for t in registry) or 'none'}")
    print(f"  server:  http://{settings.server.host}:{settings.server.port}"
          if settings.server.enabled else "  server:  disabled")
    for key, url in _redis_urls(settings).items():
        print(f"  redis:   {anyio.run(functools.partial(ping_redis, url, key=key))}")
    for warning in secret_file_warnings(settings):
        print(f"  warning: {warning}")
    if ask_api:
        # Redacted: the API's answer may quote the key (shapes the API never issued included).
        print(f"  reached: {redact_text(anyio.run(_ask_the_api, settings))}")


async def _ask_the_api(settings: Settings) -> str:
    """Read a few watched threads (or the probe's), as the start does; what the API said.

    Raises:
        AuthError: the key is refused (main says so, exit 3).
    """
    watched = settings.watch.threads or settings.watch.sessions
    profile = build_profile(settings.api, settings.api_key)
    client: ApiClient | SessionsClient = (
        SessionsClient(profile, settings.api, Metrics(), agents=settings.watch.agents)
        if settings.api.backend == "agents" else ApiClient(profile, settings.api, Metrics()))
    async with client:
        try:
            missing, asked = await threads_not_found(client, watched or (PROBE_THREAD,))
        except AuthError:
            raise
        except ApiError as exc:
            return f"not reached ({exc}); the configuration itself is OK"
    if watched and missing == asked:
        return f"the API answers, but warning: {NOT_FOUND_HINT}"
    return "the API answers"


def _watch_store(settings: Settings) -> str:
    """Where what is watched is kept ([watch] store), as the start will choose."""
    choice = store_choice(settings)
    if choice == "sqlite":
        path = settings.watch.state_path or default_state_path()
        return f"sqlite at {path} (announcements survive restarts)"
    if choice == "redis":
        return "redis at [coordination] redis_url (shared by the replicas)"
    return "memory (announcements are lost at exit)"


def _redis_urls(settings: Settings) -> dict[str, str]:
    """The Redis URLs the worker will use, each once, by the key that names it."""
    urls: dict[str, str] = {}
    if settings.coordination.backend == "redis":
        urls[settings.coordination.redis_url] = "coordination.redis_url"
    if settings.intake.redis_stream:
        urls.setdefault(settings.intake.redis_url, "intake.redis_url")
    return {key: url for url, key in urls.items()}


def _has_azure_identity() -> bool:
    try:
        return importlib.util.find_spec("azure.identity") is not None
    except ModuleNotFoundError:  # not even the azure namespace package
        return False



"""One way to open a Redis client, shared by the claims and the intake."""

from __future__ import annotations

import os
import socket
from typing import Any

from worker.config.redis_url import parse_redis_url
from worker.errors import ConfigError

__all__ = ["connect_redis", "ping_redis", "replica_name"]


def replica_name() -> str:
    """This process among the replicas: host and pid, as the claims and the intake see it."""
    return f"{socket.gethostname()}-{os.getpid()}"


def connect_redis(url: str) -> Any:
    """A ``redis.asyncio.Redis`` for ``url``; nothing is sent until the first command.

    The password goes to redis-py as an argument, never inside the URL it parses: a password
    with ``#``, ``?``, ``/`` or ``@`` would break its parsing (and its error quotes the URL).

    Raises:
        ConfigError: redis-py is not installed, or ``url`` is not a Redis URL.
    """
    parsed = parse_redis_url(url, key="redis_url")
    try:
        import redis
        import redis.asyncio
    except ImportError:
        raise ConfigError(
            "Redis coordination and intake need redis-py: pip install 'tool-worker[redis]'",
            key="coordination.backend",
        ) from None
    options: dict[str, Any] = {}
    try:
        from redis.driver_info import DriverInfo

        # Named up front: otherwise every new connection reads package metadata from disk,
        # blocking the event loop.
        options["driver_info"] = DriverInfo(name="redis-py", lib_version=redis.__version__)
    except ImportError:  # redis-py before 7 had no DriverInfo, and no such read either
        pass
    if parsed.username is not None:
        options["username"] = parsed.username
    if parsed.password is not None:
        options["password"] = parsed.password.get()
    return redis.asyncio.Redis.from_url(
        parsed.address, socket_connect_timeout=5, socket_timeout=5, **options
    )


async def ping_redis(url: str, *, key: str) -> str:
    """Connect to the Redis at ``url`` and PING it: what ``check-config`` reports.

    Returns a line saying that it answered, or why it could not be reached (the worker waits
    for a Redis that is down, so that is no configuration error).

    Raises:
        ConfigError: Redis refuses the credentials (naming ``key``, never the password).
    """
    import redis.exceptions

    shown = parse_redis_url(url, key=key).shown()
    client = connect_redis(url)
    try:
        await client.ping()
    except redis.exceptions.AuthenticationError as exc:
        raise ConfigError(f"Redis at {shown} refuses the credentials: {exc}", key=key) from None
    except redis.exceptions.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise ConfigError(f"Redis at {shown} wants a password: {exc}", key=key) from None
        return f"{shown} answered PING with an error: {exc}"
    except (redis.exceptions.RedisError, OSError) as exc:
        return f"{shown} cannot be reached now ({str(exc) or type(exc).__name__}); the worker waits for it"
    finally:
        await client.aclose()
    return f"{shown} answers PING"

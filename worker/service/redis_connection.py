"""One way to open a Redis client, shared by the claims and the intake."""

from __future__ import annotations

import os
import socket
from typing import Any

from worker.errors import ConfigError

__all__ = ["connect_redis", "replica_name"]


def replica_name() -> str:
    """This process among the replicas: host and pid, as the claims and the intake see it."""
    return f"{socket.gethostname()}-{os.getpid()}"


def connect_redis(url: str) -> Any:
    """A ``redis.asyncio.Redis`` for ``url``; nothing is sent until the first command.

    Raises:
        ConfigError: redis-py is not installed.
    """
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
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=5, **options
    )

"""Intake: threads and runs to watch, announced at run time through a Redis stream.

Applications call ``enqueue()``; every replica reads the stream in one consumer group, so each
entry reaches one replica. An entry is acknowledged once its thread is watched; entries that a
dead replica read but never acknowledged are taken over by another after ``claim_idle_s``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from .redis_connect import connect_redis

if TYPE_CHECKING:
    from .config import IntakeSettings

__all__ = ["RedisIntake", "enqueue"]

log = structlog.get_logger("worker.intake")

Watch = Callable[[str, str | None], None]


async def enqueue(
    client: Any, thread_id: str, run_id: str | None = None, *, stream: str = "tool-worker:watch"
) -> str:
    """Ask the workers to watch a thread (and a run of it): one XADD; returns the entry id.

    ``client`` is a ``redis.asyncio.Redis`` or a URL such as ``redis://127.0.0.1:6379/0``.
    """
    fields: dict[Any, Any] = {"thread_id": thread_id, **({"run_id": run_id} if run_id else {})}
    if isinstance(client, str):
        async with connect_redis(client) as own:
            return _text(await own.xadd(stream, fields))
    return _text(await client.xadd(stream, fields))


class RedisIntake:
    """Reads watch requests from a Redis stream as one consumer of the workers' group."""

    def __init__(self, redis: Any, settings: IntakeSettings, watch: Watch, consumer: str) -> None:
        self._redis = redis
        self._settings = settings
        self._watch = watch
        self._consumer = consumer
        self.handled = 0

    @classmethod
    def from_settings(cls, settings: IntakeSettings, *, watch: Watch, consumer: str) -> RedisIntake:
        return cls(connect_redis(settings.redis_url), settings, watch, consumer)

    async def run(self) -> None:
        """Read until cancelled; Redis outages are logged and waited out, nothing is dropped."""
        from redis.exceptions import RedisError

        try:
            while True:
                try:
                    await self._ensure_group()
                    await self._take_over_stale()
                    await self._read_batch()
                except (RedisError, OSError) as exc:
                    log.warning("the intake stream is unavailable; retrying", error=str(exc))
                    await anyio.sleep(1.0)
        finally:
            with anyio.CancelScope(shield=True):
                await self._redis.aclose()

    async def _ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        try:
            await self._redis.xgroup_create(
                self._settings.stream, self._settings.group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _take_over_stale(self) -> None:
        idle_ms = int(self._settings.claim_idle_s * 1000)
        _, entries, *_ = await self._redis.xautoclaim(
            self._settings.stream, self._settings.group, self._consumer, idle_ms, "0-0", count=100
        )
        await self._handle(entries)

    async def _read_batch(self) -> None:
        answer = await self._redis.xreadgroup(
            self._settings.group, self._consumer, {self._settings.stream: ">"},
            count=100, block=1000,
        )
        for _, entries in answer or []:
            await self._handle(entries)

    async def _handle(self, entries: list[tuple[Any, dict[Any, Any]]]) -> None:
        for entry_id, fields in entries:
            data = {_text(k): _text(v) for k, v in (fields or {}).items()}
            thread_id = data.get("thread_id", "")
            if thread_id:
                self._watch(thread_id, data.get("run_id") or None)
                self.handled += 1
            else:
                log.warning("intake entry without a thread_id; dropping it", entry=_text(entry_id))
            await self._redis.xack(self._settings.stream, self._settings.group, entry_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

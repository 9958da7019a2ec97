"""Intake: threads and runs to watch, announced at run time (a Redis stream, POST /v1/watch).

Applications call ``enqueue()``; every replica reads the stream in one consumer group, so each
entry reaches one replica. An entry is acknowledged once its thread is in the watch store (and
watched); entries that a dead replica read but never acknowledged are taken over by another
after ``claim_idle_s``.

Everything an intake receives comes from outside: ids are checked against what an API issues
before they reach the poller, and refusals are counted and logged at a bounded rate
(``Refusals``), so a flood of bad requests is visible without flooding the log.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.errors import WatchLimitReached, WatchStoreError
from worker.ids import is_valid_id
from worker.service.redis_connection import connect_redis

if TYPE_CHECKING:
    from worker.config.settings import IntakeSettings
    from worker.observability.metrics import Metrics

__all__ = ["RedisIntake", "Refusals", "Watch", "enqueue"]

log = structlog.get_logger("worker.service.intake")

# Adds a thread (and optionally a known run of it) to the watched set, committed to the watch
# store when it returns (``Watchlist.announcer``); raises WatchLimitReached when the worker
# follows as many threads as it may, WatchStoreError when the store cannot commit it.
Watch = Callable[[str, str | None], Awaitable[None]]

REFUSAL_LOG_INTERVAL_S = 10.0


class Refusals:
    """Counts refused watch requests by reason, and logs them at most once per ``interval_s``.

    The first refusal is logged at once; later ones are summed into the next line, which
    ``flush()`` writes once the interval has passed (callers flush on their own schedule).
    """

    def __init__(
        self,
        metrics: Metrics | None,
        source: str,
        *,
        interval_s: float = REFUSAL_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._source = source
        self._interval_s = interval_s
        self._clock = clock
        self._pending: Counter[str] = Counter()
        self._last: dict[str, Any] = {}
        self._logged_at = -math.inf
        self.total: Counter[str] = Counter()

    def refuse(self, reason: str, error: str, **facts: Any) -> None:
        """Count one refusal (``reason`` from ``metrics.INTAKE_REFUSALS``) and maybe log."""
        if self._metrics is not None:
            self._metrics.intake_refused.labels(reason).inc()
        self.total[reason] += 1
        self._pending[reason] += 1
        self._last = {"last_error": error, **facts}
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Write the summary line if refusals are pending and the interval has passed.

        ``force`` writes it anyway: at shutdown, so no refusal goes unlogged.
        """
        now = self._clock()
        if not self._pending or (now - self._logged_at < self._interval_s and not force):
            return
        log.warning("watch requests refused", source=self._source, refused=dict(self._pending),
                    interval_s=self._interval_s, **self._last)
        self._pending.clear()
        self._logged_at = now


async def enqueue(
    client: Any, thread_id: str | None = None, run_id: str | None = None, *,
    session_id: str | None = None, stream: str = "tool-worker:watch",
) -> str:
    """Ask the workers to watch a thread (and a run of it), or a session (backend "agents"):
    one XADD; returns the entry id.

    ``client`` is a ``redis.asyncio.Redis`` or a URL such as ``redis://127.0.0.1:6379/0``.
    """
    if (thread_id is None) == (session_id is None):
        raise ValueError("enqueue a thread_id or a session_id")
    fields: dict[Any, Any] = ({"thread_id": thread_id} if thread_id is not None
                              else {"session_id": session_id})
    if run_id:
        fields["run_id"] = run_id
    if isinstance(client, str):
        async with connect_redis(client) as own:
            return _text(await own.xadd(stream, fields))
    return _text(await client.xadd(stream, fields))


class RedisIntake:
    """Reads watch requests from a Redis stream as one consumer of the workers' group."""

    def __init__(
        self,
        redis: Any,
        settings: IntakeSettings,
        watch: Watch,
        consumer: str,
        *,
        metrics: Metrics | None = None,
        report: Callable[[str | None], None] | None = None,
    ) -> None:
        """``report`` hears the stream's health: an error's text, or None when it answers."""
        self._redis = redis
        self._settings = settings
        self._watch = watch
        self._consumer = consumer
        self._report = report or (lambda _error: None)
        self.refusals = Refusals(metrics, "redis")
        self.handled = 0
        self._traceback_at = -math.inf

    @classmethod
    def from_settings(
        cls, settings: IntakeSettings, *, watch: Watch, consumer: str,
        metrics: Metrics | None = None, report: Callable[[str | None], None] | None = None,
    ) -> RedisIntake:
        return cls(connect_redis(settings.redis_url), settings, watch, consumer, metrics=metrics,
                   report=report)

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
                    self._report(f"the intake stream: {type(exc).__name__}: {exc}")
                    await anyio.sleep(1.0)
                except Exception as exc:  # noqa: BLE001 - the intake outlives any one answer
                    # Entries are guarded one by one (_take_safely); this is the reader itself
                    # meeting something unforeseen. Logged at a bounded rate, then read again.
                    self._log_unexpected("the intake reader met an unexpected error; "
                                         "reading on", exc)
                    self._report(f"the intake stream: {type(exc).__name__}")
                    await anyio.sleep(1.0)
                else:
                    self._report(None)
        finally:
            self.refusals.flush(force=True)
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
        self.refusals.flush()

    async def _handle(self, entries: list[tuple[Any, Any]]) -> None:
        for entry_id, fields in entries:
            if await self._take_safely(entry_id, fields):
                await self._redis.xack(self._settings.stream, self._settings.group, entry_id)

    async def _take_safely(self, entry_id: Any, fields: Any) -> bool:
        """``_take`` that no entry can break: whatever one raises drops it, counted, acknowledged.

        Anyone who can XADD writes here; an entry that stopped the reader would stop every
        replica in turn, as each took it over after ``claim_idle_s``.
        """
        entry = repr(entry_id)[:40]
        try:
            return await self._take(entry, _decode(fields))
        except _Unusable as exc:
            self.refusals.refuse(exc.reason, str(exc), entry=entry)
        except Exception as exc:  # noqa: BLE001 - one entry must never end the intake
            self.refusals.refuse("error", f"{type(exc).__name__}: {str(exc)[:200]}", entry=entry)
            self._log_unexpected("an intake entry raised; dropped and acknowledged", exc)
        return True

    def _log_unexpected(self, message: str, exc: Exception) -> None:
        """A traceback, at most once per ``REFUSAL_LOG_INTERVAL_S`` (a stream of them is one)."""
        now = time.monotonic()
        if now - self._traceback_at >= REFUSAL_LOG_INTERVAL_S:
            self._traceback_at = now
            log.error(message, exc_info=exc)

    async def _take(self, entry: str, data: dict[str, str]) -> bool:
        """Watch the entry's thread; False leaves the entry pending, to be taken over later."""
        thread_id, run_id = data.get("thread_id") or data["session_id"], data.get("run_id") or None
        if not is_valid_id(thread_id) or (run_id is not None and not is_valid_id(run_id)):
            # Dropped, not retried: no replica will ever accept it. repr() and the cut keep a
            # hostile value from forging log lines or filling them.
            self.refusals.refuse("bad_id", "an id no API issues; dropping the entry", entry=entry,
                                 thread_id=repr(thread_id)[:60], run_id=repr(run_id)[:60])
            return True
        try:
            await self._watch(thread_id, run_id)
        except (WatchLimitReached, WatchStoreError) as exc:
            # Left unacknowledged (acknowledged only once stored): after claim_idle_s this or
            # another replica tries again.
            reason = "full" if isinstance(exc, WatchLimitReached) else "unavailable"
            self.refusals.refuse(reason, str(exc), entry=entry)
            return False
        self.handled += 1
        return True


class _Unusable(Exception):
    """An entry that no replica could ever use; ``reason`` from ``metrics.INTAKE_REFUSALS``."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


_FIELDS = frozenset({"thread_id", "run_id", "session_id"})


def _decode(fields: Any) -> dict[str, str]:
    """An entry's fields as text: a ``thread_id`` and an optional ``run_id``, or a
    ``session_id`` (a session is watched as a thread is).

    Unknown fields are refused rather than ignored, so a typo (``threadid``) or a foreign
    producer on the stream shows in the refusal count instead of half-working.

    Raises:
        _Unusable: bytes that are not UTF-8 (undecodable), or fields other than those.
    """
    if not isinstance(fields, dict) or not fields:
        raise _Unusable("bad_request", "an entry without fields (deleted, or not a watch request)")
    try:
        data = {_strict_text(k): _strict_text(v) for k, v in fields.items()}
    except (UnicodeDecodeError, TypeError):
        raise _Unusable("undecodable", "an entry whose fields are not UTF-8 text") from None
    unknown = set(data) - _FIELDS
    if unknown:
        names = sorted(repr(name)[:40] for name in unknown)[:5]
        raise _Unusable("bad_request", f"an entry with unknown fields {', '.join(names)}; "
                        "only thread_id, run_id and session_id are read")
    if bool(data.get("thread_id")) == bool(data.get("session_id")):
        raise _Unusable("bad_request", "an entry needs a thread_id or a session_id (one)")
    return data


def _strict_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"{type(value).__name__} is not text")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""The watch store in Redis: one watch set for every replica of a deployment.

Keys (under ``[coordination] key_prefix``):

- ``{p}:watch:entries``: a hash, field ``kind:id``, value ``last_active|source|run_id``;
- ``{p}:watch:revision``: a counter every add and forget increments, so replicas read the
  hash again only when it changed;
- ``{p}:watch:generation``: a random token set when the hash is first used. A Redis restarted
  without its data comes back without it: the first replica to notice sets a new one and
  writes back what it holds, and every other replica, seeing a token it does not know, does
  the same (docs/scaling.md).

Merges and conditional deletes run as Lua scripts, atomic in Redis, so two replicas adding
the same thread at once keep both of what they knew.
"""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from worker.errors import WatchStoreError
from worker.service.redis_connection import connect_redis
from worker.service.watch_store import KINDS, SOURCES, WatchEntry, WatchKey, WatchStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection, Iterable

    from worker.config.settings import CoordinationSettings

__all__ = ["RedisWatchStore"]

log = structlog.get_logger("worker.service.redis_store")

BATCH = 500  # entries per script call: one call never blocks Redis for long

# WatchEntry.merged, in Lua. KEYS: entries, revision; ARGV: field, value, field, value...
_ADD = """
for i = 1, #ARGV, 2 do
  local value = ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old then
    local ot, os, orun = string.match(old, '^([^|]*)|([^|]*)|(.*)$')
    local nt, ns, nrun = string.match(value, '^([^|]*)|([^|]*)|(.*)$')
    if tonumber(ot) > tonumber(nt) then nt = ot end
    if ns ~= 'config' then ns = os end
    if nrun == '' then nrun = orun end
    value = nt .. '|' .. ns .. '|' .. nrun
  end
  redis.call('HSET', KEYS[1], ARGV[i], value)
end
return redis.call('INCR', KEYS[2])
"""
# KEYS: entries; ARGV: at, field, field...
_TOUCH = """
for i = 2, #ARGV do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old then
    local ot, rest = string.match(old, '^([^|]*)(|.*)$')
    if tonumber(ot) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[1] .. rest) end
  end
end
return 0
"""
# KEYS: entries, revision; ARGV: idle_before ('' for any), field, field... Returns the removed.
_FORGET = """
local gone = {}
for i = 2, #ARGV do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old and (ARGV[1] == '' or tonumber(string.match(old, '^([^|]*)')) < tonumber(ARGV[1])) then
    redis.call('HDEL', KEYS[1], ARGV[i])
    gone[#gone + 1] = ARGV[i]
  end
end
if #gone > 0 then redis.call('INCR', KEYS[2]) end
return gone
"""


class RedisWatchStore(WatchStore):
    """Entries in one Redis hash shared by the replicas (see the module's docstring)."""

    name = "redis"
    shared = True

    def __init__(self, redis: Any, *, prefix: str, where: str) -> None:
        self._redis = redis
        self.where = where
        self._entries = f"{prefix}:watch:entries"
        self._revision_key = f"{prefix}:watch:revision"
        self._generation_key = f"{prefix}:watch:generation"
        self._generation: str | None = None
        self._add = redis.register_script(_ADD)
        self._touch = redis.register_script(_TOUCH)
        self._forget = redis.register_script(_FORGET)

    @classmethod
    async def open(cls, settings: CoordinationSettings) -> RedisWatchStore:
        """Connect and learn the generation (setting it on a new Redis).

        Raises:
            ConfigError: redis-py is not installed.
            WatchStoreError: Redis does not answer.
        """
        store = cls(connect_redis(settings.redis_url), prefix=settings.key_prefix,
                    where=_without_password(settings.redis_url))
        try:
            store._generation = await store._current_generation()
        except WatchStoreError:
            await store.close()
            raise
        return store

    @asynccontextmanager
    async def _translate(self) -> AsyncIterator[None]:
        from redis.exceptions import RedisError

        try:
            yield
        except (RedisError, OSError, TimeoutError) as exc:
            raise WatchStoreError(self.where, f"{type(exc).__name__}: {exc}") from exc

    async def _current_generation(self) -> str:
        """The generation token, set now (atomically, first writer wins) if Redis has none."""
        async with self._translate():
            await self._redis.set(self._generation_key, secrets.token_hex(8), nx=True)
            return _text(await self._redis.get(self._generation_key))

    async def add(self, entries: Iterable[WatchEntry]) -> None:
        args = [arg for e in entries for arg in (_field(e.key), _value(e))]
        async with self._translate():
            for start in range(0, len(args), 2 * BATCH):
                await self._add(keys=[self._entries, self._revision_key],
                                args=args[start:start + 2 * BATCH])

    async def touch(self, keys: Iterable[WatchKey], at: float) -> None:
        fields = [_field(key) for key in keys]
        async with self._translate():
            for start in range(0, len(fields), BATCH):
                await self._touch(keys=[self._entries],
                                  args=[repr(at), *fields[start:start + BATCH]])

    async def forget(self, keys: Iterable[WatchKey], *, idle_before: float | None = None
                     ) -> list[WatchKey]:
        fields = [_field(key) for key in keys]
        condition = "" if idle_before is None else repr(idle_before)
        gone: list[WatchKey] = []
        async with self._translate():
            for start in range(0, len(fields), BATCH):
                removed = await self._forget(keys=[self._entries, self._revision_key],
                                             args=[condition, *fields[start:start + BATCH]])
                gone.extend(_key(_text(field)) for field in removed)
        return gone

    async def load_all(self) -> list[WatchEntry]:
        entries = []
        async with self._translate():
            # HSCAN, not HGETALL: tens of thousands of entries never block Redis in one reply.
            async for field, value in self._redis.hscan_iter(self._entries, count=1000):
                entry = _entry(_text(field), _text(value))
                if entry is not None:
                    entries.append(entry)
        return entries

    async def revision(self) -> str:
        async with self._translate():
            revision = await self._redis.get(self._revision_key)
        return "0" if revision is None else _text(revision)

    async def restore(self, held: Collection[WatchEntry]) -> int:
        generation = await self._current_generation()
        if generation == self._generation:
            return 0
        await self.add(held)
        self._generation = generation
        log.warning("the watch store came back empty or new; wrote back what this replica holds",
                    entries=len(held), store=self.where)
        return len(held)

    async def close(self) -> None:
        await self._redis.aclose()


def _field(key: WatchKey) -> str:
    return f"{key[0]}:{key[1]}"


def _key(field: str) -> WatchKey:
    kind, _, id_ = field.partition(":")
    return (kind, id_)  # type: ignore[return-value] # only fields this module wrote


def _value(entry: WatchEntry) -> str:
    return f"{entry.last_active!r}|{entry.source}|{entry.run_id or ''}"


def _entry(field: str, value: str) -> WatchEntry | None:
    kind, _, id_ = field.partition(":")
    parts = value.split("|", 2)
    if kind not in KINDS or len(parts) != 3 or parts[1] not in SOURCES:
        return None  # written by a newer version: left alone
    try:
        last_active = float(parts[0])
    except ValueError:
        return None
    return WatchEntry(kind, id_, parts[1], parts[2] or None, last_active)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _without_password(url: str) -> str:
    """The URL as logged: a password in it stays out of the log."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return parts._replace(netloc=user + netloc).geturl()
    except ValueError:
        return "redis (an unparsable URL)"

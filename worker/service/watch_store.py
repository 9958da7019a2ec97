"""Watch store: the single source of truth of what the worker watches, kept outside its memory.

An entry is one watched thing (a thread, or with the Agents API a session), how the worker
learned of it, the run or session announced with it, and when it was last active. Three
implementations share one small async interface:

- ``MemoryWatchStore``: this process only, gone at exit (tests, the demo; chosen explicitly);
- ``SqliteWatchStore`` (``worker.service.sqlite_store``): a file that survives restarts, no server;
- ``RedisWatchStore`` (``worker.service.redis_store``): shared by every replica of a deployment.

Every write is durable when its coroutine returns: callers commit an announcement before they
answer for it (``POST /v1/watch``'s 202, a stream entry's acknowledgement).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection, Iterable

    from worker.config.settings import Settings

__all__ = [
    "Kind",
    "MemoryWatchStore",
    "Source",
    "WatchEntry",
    "WatchKey",
    "WatchStore",
    "default_state_path",
    "open_watch_store",
    "store_choice",
]

Kind = Literal["thread", "session"]
# How the worker learned of the entry: the config file, POST /v1/watch, the Redis intake
# stream, a backend's listing, a webhook.
Source = Literal["config", "announced", "intake", "discovered", "webhook"]
WatchKey = tuple[Kind, str]  # (kind, id): a thread and a session may share an id

KINDS: tuple[Kind, ...] = get_args(Kind)
SOURCES: tuple[Source, ...] = get_args(Source)


@dataclass(frozen=True, slots=True)
class WatchEntry:
    """One watched thread or session.

    ``run_id`` is the run (or session turn) announced with it, followed until it ends;
    ``last_active`` is wall-clock Unix time (it must mean the same after a restart and on
    another host): when the entry was added or a run of it was last seen.
    """

    kind: Kind
    id: str
    source: Source
    run_id: str | None = None
    last_active: float = 0.0

    @property
    def key(self) -> WatchKey:
        return (self.kind, self.id)

    def merged(self, newer: WatchEntry) -> WatchEntry:
        """This entry added again as ``newer``: what every store keeps.

        The first source stays (``config`` wins over any), a newly announced run replaces
        the old one, and ``last_active`` only moves forward.
        """
        source = "config" if "config" in (self.source, newer.source) else self.source
        return replace(self, source=source, run_id=newer.run_id or self.run_id,
                       last_active=max(self.last_active, newer.last_active))


class WatchStore(ABC):
    """What is watched. Batch operations: one round trip (or one transaction) per call.

    Raises (every method): ``WatchStoreError`` when the store cannot be reached or written;
    nothing was committed then, and the caller refuses what it was asked (a 503, an entry
    left unacknowledged) rather than claim it is kept.
    """

    name: str = "store"  # memory, sqlite, redis
    shared: bool = False  # other processes change it too (Redis): replicas re-read it
    where: str = ""  # for the start log: a path or a Redis URL without its password

    @abstractmethod
    async def add(self, entries: Iterable[WatchEntry]) -> None:
        """Add or merge (``WatchEntry.merged``) entries; committed when this returns."""

    @abstractmethod
    async def touch(self, keys: Iterable[WatchKey], at: float) -> None:
        """Mark entries active at ``at`` (Unix time); keys not stored are ignored."""

    @abstractmethod
    async def forget(self, keys: Iterable[WatchKey], *, idle_before: float | None = None
                     ) -> list[WatchKey]:
        """Remove entries; with ``idle_before`` only those last active before it.

        Returns the keys removed. The condition is checked in the store, so a replica that
        saw a run lately keeps an entry another replica thinks idle.
        """

    @abstractmethod
    async def load_all(self) -> list[WatchEntry]:
        """Every stored entry."""

    async def revision(self) -> str:
        """Changes whenever an entry is added or forgotten, by this process or another.

        Cheap (one small read): replicas compare it to decide whether to ``load_all``.
        """
        return "0"

    async def restore(self, held: Collection[WatchEntry]) -> int:
        """Write ``held`` back if the store came back empty since the last call.

        Only Redis can lose its contents under a running worker (restarted without
        persistence); it notices by its generation key. Returns how many were written.
        """
        return 0

    async def close(self) -> None:  # noqa: B027 - most stores have nothing to close
        """Release connections and files."""


class MemoryWatchStore(WatchStore):
    """This process's memory: nothing outlives it. For tests and the demo."""

    name = "memory"
    where = "this process (lost at exit)"

    def __init__(self) -> None:
        self._entries: dict[WatchKey, WatchEntry] = {}
        self._revision = 0

    async def add(self, entries: Iterable[WatchEntry]) -> None:
        for entry in entries:
            old = self._entries.get(entry.key)
            self._entries[entry.key] = entry if old is None else old.merged(entry)
        self._revision += 1

    async def touch(self, keys: Iterable[WatchKey], at: float) -> None:
        for key in keys:
            old = self._entries.get(key)
            if old is not None and old.last_active < at:
                self._entries[key] = replace(old, last_active=at)

    async def forget(self, keys: Iterable[WatchKey], *, idle_before: float | None = None
                     ) -> list[WatchKey]:
        gone = [key for key in keys if key in self._entries and (
            idle_before is None or self._entries[key].last_active < idle_before)]
        for key in gone:
            del self._entries[key]
        self._revision += bool(gone)
        return gone

    async def load_all(self) -> list[WatchEntry]:
        return list(self._entries.values())

    async def revision(self) -> str:
        return str(self._revision)


def default_state_path() -> Path:
    """``$STATE_DIRECTORY/watch.sqlite3`` under systemd (``StateDirectory=``), else ``./.tool-worker/``."""
    state_dirs = os.environ.get("STATE_DIRECTORY", "")
    base = Path(state_dirs.split(":")[0]) if state_dirs else Path(".tool-worker")
    return base / "watch.sqlite3"


def store_choice(settings: Settings) -> Literal["memory", "sqlite", "redis"]:
    """``[watch] store``, with ``auto`` resolved: Redis with Redis coordination, else SQLite."""
    choice = settings.watch.store
    if choice == "auto":
        return "redis" if settings.coordination.backend == "redis" else "sqlite"
    return choice


@asynccontextmanager
async def open_watch_store(settings: Settings) -> AsyncIterator[WatchStore]:
    """The store ``[watch] store`` names, open for the block.

    Raises:
        ConfigError: the state file cannot be created, or redis-py is missing.
        WatchStoreError: Redis does not answer.
    """
    choice = store_choice(settings)
    store: WatchStore
    if choice == "redis":
        from worker.service.redis_store import RedisWatchStore

        store = await RedisWatchStore.open(settings.coordination)
    elif choice == "sqlite":
        from worker.service.sqlite_store import SqliteWatchStore

        store = await SqliteWatchStore.open(settings.watch.state_path or default_state_path())
    else:
        store = MemoryWatchStore()
    try:
        yield store
    finally:
        await store.close()

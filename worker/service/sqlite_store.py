"""The watch store in a SQLite file: survives restarts, needs no server (the default).

Python's own ``sqlite3`` on one connection, each call in a worker thread (``anyio.to_thread``)
behind a one-slot limiter, so the event loop never waits on the disk and calls never overlap.
WAL journal with ``synchronous = FULL``: a commit is on disk when ``add`` returns, so an
announcement answered 202 survives a kill -9 and a power cut.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, cast

import anyio
import structlog

from worker.errors import ConfigError, WatchStoreError
from worker.service.watch_store import KINDS, SOURCES, WatchEntry, WatchKey, WatchStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

__all__ = ["SqliteWatchStore"]

log = structlog.get_logger("worker.service.sqlite_store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watched (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    run_id TEXT,
    last_active REAL NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID
"""
# WatchEntry.merged, in SQL.
_UPSERT = """
INSERT INTO watched (kind, id, source, run_id, last_active) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (kind, id) DO UPDATE SET
    source = CASE WHEN excluded.source = 'config' THEN 'config' ELSE watched.source END,
    run_id = COALESCE(excluded.run_id, watched.run_id),
    last_active = MAX(watched.last_active, excluded.last_active)
"""
_TOUCH = "UPDATE watched SET last_active = ? WHERE kind = ? AND id = ? AND last_active < ?"


class SqliteWatchStore(WatchStore):
    """Entries in one table of a SQLite file; one process uses the file at a time."""

    name = "sqlite"

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.where = str(path)
        self._limiter = anyio.CapacityLimiter(1)
        self._revision = 0

    @classmethod
    async def open(cls, path: Path) -> SqliteWatchStore:
        """Open (or create) the file and its directory.

        Raises:
            ConfigError: the directory or file cannot be created or is not a database.
        """
        return cls(await anyio.to_thread.run_sync(_connect, path), path)

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        def in_transaction() -> Any:
            try:
                with self._db:  # commits, or rolls back on an exception
                    return work(self._db)
            except sqlite3.Error as exc:
                raise WatchStoreError(self.where, f"{type(exc).__name__}: {exc}") from exc

        return await anyio.to_thread.run_sync(in_transaction, limiter=self._limiter)

    async def add(self, entries: Iterable[WatchEntry]) -> None:
        rows = [(e.kind, e.id, e.source, e.run_id, e.last_active) for e in entries]
        if rows:
            await self._run(lambda db: db.executemany(_UPSERT, rows))
            self._revision += 1

    async def touch(self, keys: Iterable[WatchKey], at: float) -> None:
        rows = [(at, kind, id_, at) for kind, id_ in keys]
        if rows:
            await self._run(lambda db: db.executemany(_TOUCH, rows))

    async def forget(self, keys: Iterable[WatchKey], *, idle_before: float | None = None
                     ) -> list[WatchKey]:
        wanted = list(keys)

        def delete(db: sqlite3.Connection) -> list[WatchKey]:
            gone = []
            for kind, id_ in wanted:
                cursor = db.execute(
                    "DELETE FROM watched WHERE kind = ? AND id = ? AND last_active < ?",
                    (kind, id_, float("inf") if idle_before is None else idle_before))
                if cursor.rowcount:
                    gone.append((kind, id_))
            return gone

        removed = cast("list[WatchKey]", await self._run(delete)) if wanted else []
        self._revision += bool(removed)
        return removed

    async def load_all(self) -> list[WatchEntry]:
        rows = await self._run(lambda db: db.execute(
            "SELECT kind, id, source, run_id, last_active FROM watched").fetchall())
        return [entry for entry in map(_entry, rows) if entry is not None]

    async def revision(self) -> str:
        return str(self._revision)  # one process per file: only this one changes it

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._db.close, limiter=self._limiter)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: the one-slot limiter, not the thread, keeps calls apart.
        db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute(_SCHEMA)
        db.isolation_level = "DEFERRED"  # implicit transactions, committed by ``with db``
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the watch store {path}: {exc}",
                          key="watch.state_path") from None
    return db


def _entry(row: tuple[Any, ...]) -> WatchEntry | None:
    kind, id_, source, run_id, last_active = row
    if kind not in KINDS or source not in SOURCES:  # written by a newer version: left alone
        return None
    return WatchEntry(kind, id_, source, run_id, float(last_active))

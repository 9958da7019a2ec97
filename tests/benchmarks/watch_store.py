"""What the watch store costs: one announcement, a batch, a load, a replica's revision check.

Run it with ``.venv/bin/python -m tests.benchmarks.watch_store`` (SQLite in a temporary
directory, Redis as a private redis-server on loopback); docs/scaling.md quotes its figures.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from tests.redis_server import RedisServer
from worker.config.settings import CoordinationSettings
from worker.service.redis_store import RedisWatchStore
from worker.service.sqlite_store import SqliteWatchStore
from worker.service.watch_store import WatchEntry

if TYPE_CHECKING:
    from worker.service.watch_store import WatchStore

ONE_BY_ONE = 300
BATCH = 10_000
REVISIONS = 100


async def measure(store: WatchStore) -> dict[str, float]:
    """Milliseconds: per single add, per batch add, per load_all, per revision."""
    started = time.perf_counter()
    for i in range(ONE_BY_ONE):
        await store.add([WatchEntry("thread", f"thread_a{i}", "announced", None, time.time())])
    one = (time.perf_counter() - started) / ONE_BY_ONE
    started = time.perf_counter()
    await store.add([WatchEntry("thread", f"thread_c{i}", "config", None, time.time())
                     for i in range(BATCH)])
    batch = time.perf_counter() - started
    started = time.perf_counter()
    loaded = len(await store.load_all())
    load = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(REVISIONS):
        await store.revision()
    revision = (time.perf_counter() - started) / REVISIONS
    return {"add_one_ms": one * 1000, f"add_{BATCH}_ms": batch * 1000,
            f"load_all_{loaded}_ms": load * 1000, "revision_ms": revision * 1000}


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        sqlite = await SqliteWatchStore.open(Path(directory) / "watch.sqlite3")
        try:
            figures = {"sqlite": await measure(sqlite)}
        finally:
            await sqlite.close()
        redis_server = RedisServer(Path(directory))
        redis_server.start()
        try:
            redis = await RedisWatchStore.open(CoordinationSettings(redis_url=redis_server.url))
            try:
                figures["redis"] = await measure(redis)
            finally:
                await redis.close()
        finally:
            redis_server.stop()
    for name, values in figures.items():
        print(name, "  ".join(f"{key}={value:.2f}" for key, value in values.items()))  # noqa: T201


if __name__ == "__main__":
    anyio.run(main)

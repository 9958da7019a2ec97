"""The watch store's contract, held by every implementation: memory, SQLite, Redis."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from tests.conftest import make_settings
from tests.redis_server import RedisServer
from worker.errors import ConfigError, WatchStoreError
from worker.service.watch_store import (
    MemoryWatchStore,
    WatchEntry,
    default_state_path,
    open_watch_store,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from worker.service.watch_store import WatchStore

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _settings(kind: str, tmp_path: Path, redis: RedisServer | None) -> object:
    if kind == "redis":
        assert redis is not None
        return make_settings(coordination={"backend": "redis", "redis_url": redis.url,
                                           "key_prefix": f"test-{tmp_path.name}"})
    return make_settings(watch={"store": kind, "state_path": str(tmp_path / "w.sqlite3")})


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WatchStore]:
    redis = request.getfixturevalue("redis") if request.param == "redis" else None
    async with open_watch_store(_settings(request.param, tmp_path, redis)) as opened:  # type: ignore[arg-type]
        assert opened.name == request.param
        yield opened


def entry(id_: str = "thread_a", **fields: object) -> WatchEntry:
    values: dict[str, object] = {"kind": "thread", "id": id_, "source": "announced",
                                 "run_id": None, "last_active": 100.0, **fields}
    return WatchEntry(**values)  # type: ignore[arg-type]


async def by_key(store: WatchStore) -> dict[tuple[str, str], WatchEntry]:
    return {e.key: e for e in await store.load_all()}


async def test_added_entries_are_loaded_as_given(store: WatchStore) -> None:
    """Every field survives the round trip, ids with dots and colons included."""
    given = [entry("thread_a"), entry("a.b:c-1", run_id="run_1", source="intake", last_active=1.5),
             entry("thread_a", kind="session", source="webhook")]
    await store.add(given)
    assert sorted(await store.load_all(), key=repr) == sorted(given, key=repr)


async def test_kind_is_part_of_the_key(store: WatchStore) -> None:
    """A session and a thread with the same id are two entries; forgetting one keeps the other."""
    await store.add([entry("x1"), entry("x1", kind="session")])
    assert await store.forget([("session", "x1")]) == [("session", "x1")]
    assert list(await by_key(store)) == [("thread", "x1")]


async def test_adding_again_merges(store: WatchStore) -> None:
    """The first source stays unless config, a new run replaces, last_active only grows."""
    await store.add([entry("t1", source="discovered", run_id="run_old", last_active=50.0),
                     entry("t2", source="announced", last_active=10.0)])
    await store.add([entry("t1", source="announced", run_id=None, last_active=40.0),
                     entry("t2", source="config", run_id="run_new", last_active=20.0)])
    stored = await by_key(store)
    assert stored[("thread", "t1")] == entry("t1", source="discovered", run_id="run_old",
                                             last_active=50.0)
    assert stored[("thread", "t2")] == entry("t2", source="config", run_id="run_new",
                                             last_active=20.0)


async def test_touch_moves_last_active_forward_only(store: WatchStore) -> None:
    await store.add([entry("t1", last_active=100.0), entry("t2", last_active=100.0)])
    await store.touch([("thread", "t1"), ("thread", "unknown")], 200.0)
    await store.touch([("thread", "t2")], 50.0)
    stored = await by_key(store)
    assert stored[("thread", "t1")].last_active == 200.0
    assert stored[("thread", "t2")].last_active == 100.0
    assert ("thread", "unknown") not in stored


async def test_forget_removes_only_what_is_idle_when_asked(store: WatchStore) -> None:
    """With idle_before, an entry active since then stays: another replica saw a run."""
    await store.add([entry("old", last_active=10.0), entry("new", last_active=90.0)])
    gone = await store.forget([("thread", "old"), ("thread", "new"), ("thread", "absent")],
                              idle_before=50.0)
    assert gone == [("thread", "old")]
    assert list(await by_key(store)) == [("thread", "new")]
    assert await store.forget([("thread", "new")]) == [("thread", "new")]
    assert await store.load_all() == []


async def test_revision_changes_with_add_and_forget(store: WatchStore) -> None:
    first = await store.revision()
    await store.add([entry()])
    second = await store.revision()
    await store.forget([("thread", "thread_a")])
    assert len({first, second, await store.revision()}) == 3


async def test_many_entries_in_one_call(store: WatchStore) -> None:
    """Batches larger than one script call or statement are all kept."""
    await store.add(entry(f"thread_{i}", last_active=float(i)) for i in range(1200))
    assert len(await store.load_all()) == 1200
    assert len(await store.forget([("thread", f"thread_{i}") for i in range(1200)],
                                  idle_before=600.0)) == 600


async def test_an_unchanged_store_restores_nothing(store: WatchStore) -> None:
    await store.add([entry()])
    assert await store.restore([entry("other")]) == 0


async def test_sqlite_keeps_entries_across_reopening(tmp_path: Path) -> None:
    settings = _settings("sqlite", tmp_path, None)
    async with open_watch_store(settings) as store:  # type: ignore[arg-type]
        await store.add([entry(run_id="run_1")])
    async with open_watch_store(settings) as store:  # type: ignore[arg-type]
        assert await store.load_all() == [entry(run_id="run_1")]


async def test_sqlite_in_a_place_it_cannot_create_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    settings = make_settings(watch={"store": "sqlite", "state_path": str(tmp_path / "file" / "x")})
    with pytest.raises(ConfigError, match="watch store"):
        async with open_watch_store(settings):
            pass


async def test_redis_that_comes_back_empty_gets_entries_written_back(
    redis: RedisServer, tmp_path: Path
) -> None:
    """A new generation token tells a replica to write back what it holds, once."""
    settings = _settings("redis", tmp_path, redis)
    async with open_watch_store(settings) as store:  # type: ignore[arg-type]
        await store.add([entry()])
        redis.restart()
        with contextlib.suppress(WatchStoreError):  # the old connection may be refused once
            await store.load_all()
        assert await store.restore([entry(), entry("thread_b")]) == 2
        assert len(await store.load_all()) == 2
        assert await store.restore([entry()]) == 0


async def test_redis_unreachable_is_a_store_error(tmp_path: Path) -> None:
    settings = make_settings(coordination={"backend": "redis", "redis_url": "redis://127.0.0.1:1/0"})
    with pytest.raises(WatchStoreError, match="watch store"):
        async with open_watch_store(settings):
            pass


async def test_memory_is_chosen_explicitly_and_says_so() -> None:
    assert "lost at exit" in MemoryWatchStore().where


def test_the_default_path_follows_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tool-worker:/var/lib/other")
    assert str(default_state_path()) == "/var/lib/tool-worker/watch.sqlite3"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert str(default_state_path()) == ".tool-worker/watch.sqlite3"

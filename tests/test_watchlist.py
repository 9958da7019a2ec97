"""The watchlist: announcements committed before they are followed, reloaded at start, retired."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import make_settings
from worker.errors import WatchLimitReached, WatchStoreError
from worker.observability.metrics import Metrics
from worker.rounds.watchlist import Watchlist
from worker.service.watch_store import MemoryWatchStore, WatchEntry
from worker.testing import capture_logs

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

pytestmark = pytest.mark.anyio


class FakeFollower:
    """A poller's part in the watchlist: ids followed, and which of them have a run going on."""

    def __init__(self) -> None:
        self.followed: dict[str, str | None] = {}
        self.running: set[str] = set()

    def watch(self, thread_id: str, run_id: str | None = None, *, announced: bool = True) -> None:
        self.followed[thread_id] = run_id
        if run_id is not None:
            self.running.add(thread_id)

    def unwatch(self, thread_id: str) -> bool:
        if thread_id in self.running:
            return False
        self.followed.pop(thread_id, None)
        return True

    @property
    def watching(self) -> Collection[str]:
        return self.followed.keys()

    @property
    def active(self) -> Collection[str]:
        return self.running


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FailingStore(MemoryWatchStore):
    async def add(self, entries: Iterable[WatchEntry]) -> None:
        raise WatchStoreError("test", "disk full")


def make(store: MemoryWatchStore | None = None, **watch: object
         ) -> tuple[Watchlist, FakeFollower, MemoryWatchStore, Clock]:
    store = store or MemoryWatchStore()
    clock = Clock()
    watchlist = Watchlist(store, make_settings(watch=watch).watch, Metrics(), clock=clock)
    follower = FakeFollower()
    watchlist.follow("thread", follower)
    return watchlist, follower, store, clock


async def test_an_announcement_is_stored_then_followed() -> None:
    watchlist, follower, store, clock = make()
    await watchlist.announce("thread", "thread_a", "run_1", source="announced")
    assert await store.load_all() == [WatchEntry("thread", "thread_a", "announced", "run_1", clock.now)]
    assert follower.followed == {"thread_a": "run_1"}


async def test_an_announcement_the_store_refuses_is_not_followed() -> None:
    watchlist, follower, _, _ = make(FailingStore())
    with pytest.raises(WatchStoreError):
        await watchlist.announcer("intake")("thread_a", None)
    assert follower.followed == {}


async def test_a_full_list_refuses_before_storing() -> None:
    watchlist, _, store, _ = make(max_threads=1)
    await watchlist.announce("thread", "thread_a", source="announced")
    await watchlist.announce("thread", "thread_a", "run_2", source="announced")  # known: fine
    with pytest.raises(WatchLimitReached):
        await watchlist.announce("thread", "thread_b", source="announced")
    assert [e.id for e in await store.load_all()] == ["thread_a"]


async def test_a_restart_follows_every_stored_entry_and_the_config() -> None:
    store = MemoryWatchStore()
    first, _, _, _ = make(store, threads=["thread_conf"])
    await first.load()
    await first.announce("thread", "thread_a", "run_1", source="announced")
    second, follower, _, _ = make(store, threads=["thread_conf"])
    with capture_logs() as logs:
        assert await second.load() == 2
    assert follower.followed == {"thread_conf": None, "thread_a": "run_1"}
    loaded = next(line for line in logs if line["event"] == "watch store loaded")
    assert (loaded["store"], loaded["where"], loaded["entries"]) == ("memory", store.where, 2)


async def test_idle_threads_are_retired_but_not_configured_or_running_ones() -> None:
    watchlist, follower, store, clock = make(threads=["thread_conf"], forget_after_s=60)
    await watchlist.load()
    await watchlist.announce("thread", "thread_idle", source="intake")
    await watchlist.announce("thread", "thread_run", "run_1", source="announced")
    clock.now += 59
    await watchlist.sync()
    assert set(follower.followed) == {"thread_conf", "thread_idle", "thread_run"}
    clock.now += 2
    with capture_logs() as logs:
        await watchlist.sync()
    assert set(follower.followed) == {"thread_conf", "thread_run"}
    assert {e.id for e in await store.load_all()} == {"thread_conf", "thread_run"}
    assert watchlist.retired == 1
    assert [line["retired"] for line in logs if line["event"] == "idle threads retired"] == [1]
    follower.running.clear()  # the run ended: forget_after_s from its last sight
    clock.now += 61
    await watchlist.sync()
    assert set(follower.followed) == {"thread_conf"}


async def test_what_the_follower_found_or_dropped_reaches_the_store() -> None:
    """Discovery adds threads in the poller; a 404 drops them: the store follows both."""
    watchlist, follower, store, _ = make()
    await watchlist.announce("thread", "thread_gone", source="announced")
    follower.followed.pop("thread_gone")
    follower.followed["thread_found"] = None
    await watchlist.sync()
    assert [(e.id, e.source) for e in await store.load_all()] == [("thread_found", "discovered")]


class SharedStore(MemoryWatchStore):
    shared = True


async def test_replicas_on_a_shared_store_follow_each_others_adds_and_forgets() -> None:
    store = SharedStore()
    a, _, _, clock_a = make(store, forget_after_s=60)
    b, follower_b, _, clock_b = make(store, forget_after_s=60)
    await a.load()
    await b.load()
    await a.announce("thread", "thread_x", source="intake")
    await b.sync()
    assert set(follower_b.followed) == {"thread_x"}
    clock_a.now += 61
    await a.sync()  # retired by a...
    clock_b.now += 1
    await b.sync()  # ...and so no longer followed by b
    assert follower_b.followed == {}

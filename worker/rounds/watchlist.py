"""Watchlist: what is watched, kept in the watch store first and followed in memory second.

Every way in (``POST /v1/watch``, the Redis intake, discovery, the config) goes through here:
an announcement is committed to the store before the caller is answered, then handed to the
follower of its kind (the poller for threads; the Agents API's sessions have their own). At
start every stored entry is followed again; every ``store_sync_interval_s`` the list

- notes which entries were active (a run going on) and touches them in the store,
- stores what the follower found by itself (discovery) and forgets what it dropped (404),
- retires entries idle for ``forget_after_s`` (never ``[watch] threads``, never a running run),
- on a shared store (Redis): writes back what it holds if Redis came back empty, and follows
  what other replicas added or forgot.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import anyio
import structlog

from worker.errors import WatchLimitReached, WatchStoreError
from worker.service.watch_store import WatchEntry, open_watch_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Collection

    from worker.config.settings import Settings, WatchSettings
    from worker.observability.metrics import Metrics
    from worker.service.watch_store import Kind, Source, WatchKey, WatchStore

__all__ = ["Follower", "Watchlist", "open_watchlist"]

log = structlog.get_logger("worker.rounds.watchlist")


class Follower(Protocol):
    """What follows one kind of watched thing in memory (the ``Poller`` for threads)."""

    def watch(self, thread_id: str, run_id: str | None = None, *, announced: bool = True) -> None:
        """Follow it (and the run, if given). Raises ``WatchLimitReached``."""

    def unwatch(self, thread_id: str) -> bool:
        """Stop following it; False (and kept) while a run of it is going on."""

    @property
    def watching(self) -> Collection[str]:
        """The ids followed now."""

    @property
    def active(self) -> Collection[str]:
        """The ids with a run going on (or not looked at yet): not idle."""


class Watchlist:
    """The store and the followers kept in step (see the module's docstring)."""

    def __init__(self, store: WatchStore, settings: WatchSettings, metrics: Metrics, *,
                 kind: Kind = "thread", clock: Callable[[], float] = time.time) -> None:
        """``kind``: what the poller follows (sessions with the Agents API, else threads)."""
        self.store = store
        self.kind = kind
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._followers: dict[Kind, Follower] = {}
        self._entries: dict[WatchKey, WatchEntry] = {}  # what this process follows
        self._fresh: set[WatchKey] = set()  # added since the running sync began
        self._configured: set[WatchKey] = {(kind, id_) for id_ in (*settings.threads,
                                                                    *settings.sessions)}
        self._revision: str | None = None
        self.retired = 0

    def follow(self, kind: Kind, follower: Follower) -> None:
        """``follower`` follows entries of ``kind`` from now on."""
        self._followers[kind] = follower

    def announcer(self, source: Source, kind: Kind | None = None
                  ) -> Callable[[str, str | None], Awaitable[None]]:
        """An ``intake.Watch`` for one way in: ``await announce(id, run_id)``."""
        async def announce(id_: str, run_id: str | None) -> None:
            await self.announce(kind or self.kind, id_, run_id, source=source)
        return announce

    async def announce(self, kind: Kind, id_: str, run_id: str | None = None, *,
                       source: Source) -> None:
        """Store the entry, then follow it; returns once it is committed.

        Raises:
            WatchLimitReached: ``max_threads`` are followed already (nothing stored).
            WatchStoreError: the store could not commit it (nothing followed).
        """
        follower = self._followers[kind]
        key = (kind, id_)
        if key not in self._entries and len(follower.watching) >= self._settings.max_threads:
            raise WatchLimitReached(self._settings.max_threads)
        entry = WatchEntry(kind, id_, source, run_id, self._clock())
        await self.store.add([entry])
        self._follow(entry, announced=True)

    def _follow(self, entry: WatchEntry, *, announced: bool) -> None:
        old = self._entries.get(entry.key)
        self._entries[entry.key] = entry if old is None else old.merged(entry)
        if self.store.shared:  # only a shared store's sync needs it (and empties it)
            self._fresh.add(entry.key)
        self._followers[entry.kind].watch(entry.id, entry.run_id, announced=announced)

    async def load(self) -> int:
        """At start: store the configured threads, then follow every stored entry.

        Raises:
            WatchStoreError: the store cannot be read.
        """
        now = self._clock()
        await self.store.add(WatchEntry(kind, id_, "config", None, now)
                             for kind, id_ in self._configured)
        # The revision first: a change made while the entries are read shows at the next sync.
        self._revision = await self.store.revision()
        entries = await self.store.load_all()
        skipped = self._follow_all(entries)
        log.info("watch store loaded", store=self.store.name, where=self.store.where,
                 entries=len(entries), followed=len(self._entries), not_followed=skipped,
                 forget_after_s=self._settings.forget_after_s)
        return len(entries)

    def _follow_all(self, entries: Collection[WatchEntry]) -> int:
        """Follow entries not followed yet; returns how many could not be (limit, no follower)."""
        skipped = 0
        for entry in entries:
            if entry.key in self._entries:
                continue
            if entry.kind not in self._followers:
                skipped += 1
                continue
            try:
                self._follow(entry, announced=False)
            except WatchLimitReached:
                skipped += 1
        return skipped

    async def keep_in_step(self) -> None:
        """``sync`` every ``store_sync_interval_s`` until cancelled; outages are waited out."""
        failing = False
        while True:
            await anyio.sleep(self._settings.store_sync_interval_s)
            try:
                await self.sync()
            except WatchStoreError as exc:
                if not failing:  # once per outage
                    log.warning("the watch store is unavailable; retrying", error=str(exc))
                failing = True
            else:
                if failing:
                    log.info("the watch store answers again", store=self.store.name)
                failing = False

    async def sync(self) -> None:
        """One pass: touch, reconcile with the followers, retire, follow other replicas."""
        now = self._clock()
        await self._touch_active(now)
        await self._reconcile()
        await self._retire(now)
        if self.store.shared:
            await self._follow_others()

    async def _touch_active(self, now: float) -> None:
        active = [(kind, id_) for kind, follower in self._followers.items()
                  for id_ in follower.active if (kind, id_) in self._entries]
        for key in active:
            self._entries[key] = replace(self._entries[key], last_active=now)
        if active:
            await self.store.touch(active, now)

    async def _reconcile(self) -> None:
        """Store what a follower found on its own (discovery); forget what it dropped (404)."""
        now = self._clock()
        for kind, follower in self._followers.items():
            watching = set(follower.watching)
            found = [WatchEntry(kind, id_, "discovered", None, now)
                     for id_ in watching if (kind, id_) not in self._entries]
            dropped = [key for key in self._entries if key[0] == kind and key[1] not in watching]
            if found:
                await self.store.add(found)
                self._entries.update((entry.key, entry) for entry in found)
            if dropped:
                await self.store.forget(dropped)
                for key in dropped:
                    del self._entries[key]

    async def _retire(self, now: float) -> None:
        """Forget entries with no run for ``forget_after_s``: in the store, then here."""
        cutoff = now - self._settings.forget_after_s
        idle = [key for key, entry in self._entries.items()
                if entry.last_active < cutoff and key not in self._configured]
        if not idle:
            return
        gone = set(await self.store.forget(idle, idle_before=cutoff))
        for key in idle:
            if key not in gone:  # another replica saw it active: look again later
                self._entries[key] = replace(self._entries[key], last_active=now)
            elif self._followers[key[0]].unwatch(key[1]):
                del self._entries[key]
            else:  # a run started in between: keep it
                await self.store.add([replace(self._entries[key], last_active=now)])
                gone.discard(key)
        if gone:
            self.retired += len(gone)
            self._metrics.threads_retired.inc(len(gone))
            log.info("idle threads retired", retired=len(gone), examples=sorted(gone)[:3],
                     forget_after_s=self._settings.forget_after_s)

    async def _follow_others(self) -> None:
        """Shared store: write back after an empty Redis; follow others' adds and forgets."""
        if await self.store.restore(list(self._entries.values())):
            self._revision = None
        revision = await self.store.revision()
        if revision == self._revision:
            return
        self._fresh = set()
        entries = await self.store.load_all()
        if await self.store.restore(list(self._entries.values())):
            return  # emptied while we read: what was read says nothing of what is gone
        self._revision = revision
        self._follow_all(entries)
        stored = {entry.key for entry in entries}
        kept = []
        for key in [k for k in self._entries if k not in stored and k not in self._fresh]:
            if self._followers[key[0]].unwatch(key[1]):  # retired or dropped by another replica
                del self._entries[key]
            else:  # a run of it is going on here: it stays watched, and stored
                kept.append(self._entries[key])
        if kept:
            await self.store.add(kept)


@asynccontextmanager
async def open_watchlist(settings: Settings, metrics: Metrics, poller: Follower
                         ) -> AsyncIterator[Watchlist]:
    """The watchlist on the store ``[watch] store`` names, with every stored entry followed by
    ``poller`` before the block starts, kept in step with the store while it runs.

    Raises:
        ConfigError: the state file cannot be created, or redis-py is missing.
        WatchStoreError: the store does not answer at start.
    """
    kind: Kind = "session" if settings.api.backend == "agents" else "thread"
    async with open_watch_store(settings) as store:
        watchlist = Watchlist(store, settings.watch, metrics, kind=kind)
        watchlist.follow(kind, poller)
        await watchlist.load()
        async with anyio.create_task_group() as tg:
            tg.start_soon(watchlist.keep_in_step)
            yield watchlist
            tg.cancel_scope.cancel()

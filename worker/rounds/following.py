"""The poller's watched threads as the watchlist sees them (``watchlist.Follower``).

A mixin of ``Poller``: the ids it follows, which of them are busy, and retiring one, kept here
so that the poller's module stays about polling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

    from worker.errors import AuthError
    from worker.observability.metrics import Metrics
    from worker.rounds.live import LiveStreams
    from worker.rounds.schedule import ThreadState

__all__ = ["WatchedThreads"]


class WatchedThreads:
    """What ``Poller`` holds of its threads, and the watchlist's view of it."""

    _watches: dict[str, ThreadState]
    _unsettled: set[str]  # watches not yet polled, or with a run going on
    _streams: LiveStreams | None
    _metrics: Metrics

    def _key_refused(self, thread_id: str, error: AuthError | None) -> None:
        raise NotImplementedError  # the poller's

    @property
    def watching(self) -> Collection[str]:
        """The threads watched."""
        return self._watches.keys()

    @property
    def active(self) -> Collection[str]:
        """Threads with a run going on, a round in flight, or not polled yet."""
        return self._unsettled

    def unwatch(self, thread_id: str) -> bool:
        """Stop watching an idle thread (retired); False, and kept, while a run is going on."""
        watch = self._watches.get(thread_id)
        if watch is not None and (watch.run_id is not None or watch.busy):
            return False
        if watch is not None:
            self._remove(thread_id)
        return True

    def _remove(self, thread_id: str) -> None:
        del self._watches[thread_id]
        self._key_refused(thread_id, None)
        if self._streams is not None:
            self._streams.drop(thread_id)
        self._unsettled.discard(thread_id)
        self._metrics.watched_threads.set(len(self._watches))

"""ThreadMetadataCache: a thread's metadata read once and shared by its calls for a while."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

__all__ = ["ThreadMetadataCache"]

# Past this many cached threads, expired entries are dropped on the next read.
_PRUNE_ABOVE = 10_000


class ThreadMetadataCache:
    """``get(thread_id)`` reads the thread once per ``ttl_s``; calls that ask at once share it.

    ``read`` is the request (``ApiClient.retrieve_thread_metadata``). A failed read is not
    cached: the next call asks again.
    """

    def __init__(self, read: Callable[[str], Awaitable[Mapping[str, str]]], ttl_s: float) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._cached: dict[str, tuple[float, Mapping[str, str]]] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def get(self, thread_id: str) -> Mapping[str, str]:
        """The thread's metadata, from the cache while it is fresh."""
        fresh = self._fresh(thread_id)
        if fresh is not None:
            return fresh
        lock = self._locks.setdefault(thread_id, anyio.Lock())
        try:
            async with lock:  # the parallel calls of a round make one request between them
                fresh = self._fresh(thread_id)
                if fresh is None:
                    fresh = await self._read(thread_id)
                    self._prune()
                    self._cached[thread_id] = (anyio.current_time() + self._ttl_s, fresh)
                return fresh
        finally:
            if not lock.statistics().tasks_waiting and not lock.locked():
                self._locks.pop(thread_id, None)

    def _fresh(self, thread_id: str) -> Mapping[str, str] | None:
        entry = self._cached.get(thread_id)
        if entry is None or entry[0] <= anyio.current_time():
            return None
        return entry[1]

    def _prune(self) -> None:
        if len(self._cached) > _PRUNE_ABOVE:
            now = anyio.current_time()
            self._cached = {k: v for k, v in self._cached.items() if v[0] > now}

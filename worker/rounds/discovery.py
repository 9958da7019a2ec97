"""Discovery: watch every thread (or session) the backend lists, looking again now and then."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import structlog

from worker.errors import ApiError, WatchLimitReached

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.api.protocol import RoundsApi

__all__ = ["Discovery"]

log = structlog.get_logger("worker.rounds.discovery")


class Discovery:
    """Lists what the backend holds and hands each id not ``known`` yet to ``add``.

    A protocol that lists newest first (sessions) stops at the first page that holds a known
    id, so a listing costs a page or two however many sessions there are.
    """

    def __init__(self, client: RoundsApi, interval_s: float, *,
                 known: Callable[[str], bool], add: Callable[[str], object]) -> None:
        self._client = client
        self._interval_s = interval_s
        self._known = known
        self._add = add

    async def forever(self, stopped: anyio.Event) -> None:
        """Look again every ``interval_s`` until ``stopped`` is set."""
        while not stopped.is_set():
            with anyio.move_on_after(self._interval_s):
                await stopped.wait()
            if not stopped.is_set():
                await self.once()

    async def once(self) -> None:
        """One listing; a failure is logged and tried again at the next interval."""
        try:
            await self.discover()
        except ApiError as exc:
            log.warning("listing threads failed", error=str(exc))
        except WatchLimitReached as exc:
            log.warning("not following every listed thread", error=str(exc))

    async def discover(self) -> int:
        """Watch every listed id not known yet; returns how many were new.

        Raises:
            WatchLimitReached: the listing holds more than ``max_threads``.
        """
        new, after = 0, None
        while True:
            listed, after = await self._client.list_threads(after=after, known=self._known)
            for thread_id in listed:
                if not self._known(thread_id):
                    new += 1
                    self._add(thread_id)
            if after is None:
                break
        if new:
            log.info("discovered threads", new=new)
        return new

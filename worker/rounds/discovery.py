"""Discovery: watch every thread (or session) the backend lists, looking again now and then.

A listing is paged by cursor, and a broken or hostile server can make that walk endless: a
page that always says ``has_more``, a cursor that never moves, pages that come round again.
So one look reads at most ``max_pages`` pages (the next interval reads on from where it
stopped); a cursor seen before in the same look is a ``BadAnswer``, counted as one, and ends
the look. Until a look gets through without a bad answer, readiness names the listing as a
failing dependency.

A look reads the newest pages only, until one holds an id an earlier look listed: older ones
were listed then (the first look reads them all). With replicas, only the holder of the
discovery lease (``Membership.holds_lease``) looks; the others follow what it finds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import structlog

from worker.errors import ApiError, BadAnswer, WatchLimitReached

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.api.protocol import RoundsApi
    from worker.observability.health import Health
    from worker.observability.metrics import Metrics
    from worker.service.membership import Membership

__all__ = ["DEPENDENCY", "Discovery"]

log = structlog.get_logger("worker.rounds.discovery")

# The name readiness shows a broken listing under.
DEPENDENCY = "thread listing"


class Discovery:
    """Lists what the backend holds and hands each id not ``known`` yet to ``add``.

    A protocol that lists newest first (sessions) stops at the first page that holds a known
    id, so a listing costs a page or two however many sessions there are.
    """

    def __init__(self, client: RoundsApi, interval_s: float, *,
                 known: Callable[[str], bool], add: Callable[[str], object],
                 health: Health, metrics: Metrics, max_pages: int,
                 membership: Membership | None = None) -> None:
        self._client = client
        self._interval_s = interval_s
        self._known = known
        self._add = add
        self._health = health
        self._metrics = metrics
        self._max_pages = max_pages
        self._resume: str | None = None  # where a look cut by max_pages stopped
        self._membership = membership
        self._listed: set[str] = set()  # ids earlier looks listed: a look stops at them

    async def forever(self, stopped: anyio.Event) -> None:
        """Look again every ``interval_s`` until ``stopped`` is set."""
        while not stopped.is_set():
            with anyio.move_on_after(self._interval_s):
                await stopped.wait()
            if not stopped.is_set():
                await self.once()

    async def once(self) -> None:
        """One listing (if this replica leads discovery); a failure is logged and tried
        again at the next interval."""
        if self._membership is not None and not self._membership.holds_lease:
            self._listed.clear()  # another replica lists: a look of ours would start afresh
            self._resume = None
            return
        try:
            await self.discover()
        except ApiError as exc:
            log.warning("listing threads failed", error=str(exc))
        except WatchLimitReached as exc:
            log.warning("not following every listed thread", error=str(exc))

    async def discover(self) -> int:
        """Watch every listed id not known yet, reading at most ``max_pages`` pages; returns
        how many were new.

        Raises:
            ApiError: a page could not be read, or the listing is broken (a BadAnswer).
            WatchLimitReached: the listing holds more than ``max_threads``.
        """
        new, after, listed_now = 0, self._resume, set[str]()
        seen = {after} if after is not None else set()
        for _ in range(self._max_pages):
            try:
                listed, after = await self._client.list_threads(
                    after=after, known=self._listed.__contains__)
                new += self._follow(listed)
                listed_now.update(listed)  # a look that fails (a broken listing) adds none
                if after is not None and after in seen:
                    self._metrics.api_errors.labels("list_threads", "bad_answer").inc()
                    raise BadAnswer("list_threads", f"the cursor came back to {after[:80]!r}: "
                                                    "the listing does not follow 'after'")
            except BadAnswer as exc:
                self._resume = None
                self._health.dependency(DEPENDENCY, str(exc))
                raise
            if after is None:
                break
            seen.add(after)
        else:
            log.info("the listing has more pages than [watch] discover_max_pages; the next "
                     "look reads on", pages=self._max_pages)
        self._resume = after
        self._listed |= listed_now
        self._health.dependency(DEPENDENCY, None)
        if new:
            log.info("discovered threads", new=new)
        return new

    def _follow(self, listed: list[str]) -> int:
        new = 0
        for thread_id in listed:
            if not self._known(thread_id):
                new += 1
                self._add(thread_id)
        return new

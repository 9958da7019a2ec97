"""Discovery: the first look reads every page, later ones the newest until a listed thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.observability.health import Health
from worker.observability.metrics import Metrics
from worker.rounds.discovery import Discovery
from worker.service.membership import Membership

if TYPE_CHECKING:
    from collections.abc import Callable


class Listing:
    """Thread ids newest first, in pages of two, ending at a ``known`` one as ApiClient does."""

    def __init__(self, count: int) -> None:
        self.ids = [f"thread_{i:03d}" for i in range(count)]
        self.pages: list[str | None] = []

    def add(self, count: int) -> None:
        self.ids += [f"thread_{len(self.ids) + i:03d}" for i in range(count)]

    async def list_threads(self, *, after: str | None = None,
                           known: Callable[[str], bool] | None = None,
                           ) -> tuple[list[str], str | None]:
        self.pages.append(after)
        newest_first = self.ids[::-1]
        start = newest_first.index(after) + 1 if after else 0
        page = newest_first[start:start + 2]
        if known is not None and any(known(t) for t in page):
            return page, None
        return page, (page[-1] if start + 2 < len(newest_first) else None)


def discovery(listing: Listing, watched: set[str], membership: Membership | None = None,
              ) -> Discovery:
    client: Any = listing
    return Discovery(client, 30.0, known=watched.__contains__, add=watched.add,
                     health=Health.for_interval(5.0), metrics=Metrics(), max_pages=100,
                     membership=membership)


async def test_the_first_look_reads_every_page() -> None:
    listing, watched = Listing(7), set[str]()
    assert await discovery(listing, watched).discover() == 7
    assert watched == set(listing.ids)
    assert len(listing.pages) == 4


async def test_later_looks_stop_at_the_threads_listed_before() -> None:
    """Three new threads: two pages are read, not all six."""
    listing, watched = Listing(9), set[str]()
    finder = discovery(listing, watched)
    await finder.discover()
    listing.add(3)
    listing.pages.clear()
    assert await finder.discover() == 3
    assert watched == set(listing.ids)
    assert len(listing.pages) == 2
    listing.pages.clear()
    assert await finder.discover() == 0
    assert len(listing.pages) == 1


async def test_a_thread_watched_otherwise_does_not_end_a_look() -> None:
    """A newer thread announced (so watched) before the look does not hide older new ones."""
    listing, watched = Listing(4), set[str]()
    finder = discovery(listing, watched)
    await finder.discover()
    listing.add(5)
    watched.add(listing.ids[-1])  # the newest was announced
    assert await finder.discover() == 4
    assert watched == set(listing.ids)


async def test_a_replica_without_the_lease_lists_nothing() -> None:
    """With replicas, only the holder of the discovery lease lists the threads."""

    class Follower(Membership):
        @property
        def holds_lease(self) -> bool:
            return False

    listing, watched = Listing(3), set[str]()
    await discovery(listing, watched, Follower("r1")).once()
    assert listing.pages == []
    assert watched == set()

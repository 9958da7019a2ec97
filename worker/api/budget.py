"""The request budget: how often the worker may ask the API, and who asks first."""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["Lane", "RequestBudget"]

class Lane(enum.IntEnum):
    """Who waits for the budget; a lower lane always goes first."""

    SUBMIT = 0  # outputs computed and waiting: the most expensive thing to delay
    ACTIVE = 1  # runs known to be going on
    ANNOUNCED = 2  # threads announced but not seen yet: cheap to forge, so never first
    IDLE = 3  # threads without a run, looked at for new ones


@dataclass(order=True, slots=True)
class _Waiter:
    """A place in the budget's line; ``gone`` ones are dropped when they reach the head."""

    rank: int
    seq: int
    event: anyio.Event = field(compare=False)
    gone: bool = field(default=False, compare=False)

    def rearm(self) -> None:
        # anyio Events cannot be cleared: swap in a fresh one, keeping the place in line.
        if self.event.is_set():
            self.event = anyio.Event()


class RequestBudget:
    """At most ``per_s`` requests in any one-second window, handed out by lane.

    A sliding log of send times: a token bucket would allow a burst of twice the rate across a
    window boundary; the log does not. A request taken with ``spend`` counts from the moment it
    is allowed until a window after its answer came: it may wait for a pooled connection before
    it leaves, so the API can see it later than it was counted, and only counting it until it
    is surely there keeps every one-second window the API sees within the budget. When requests
    wait, the lowest lane goes first (then first come, first served), so a flood of announced
    threads never delays a submission or an active run. Joining and leaving the line is
    O(log n), however many wait.

    ``per_s`` may change while requests wait: replicas divide one deployment budget
    (``total_per_s``) among the live ones.
    """

    WINDOW_S = 1.05

    def __init__(self, per_s: int) -> None:
        self.per_s = per_s
        self.total_per_s = per_s  # the deployment's budget; per_s is this replica's part
        self._sent: deque[float] = deque()
        self._in_flight = 0
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()
        self.waited_s = 0.0

    def share(self, per_s: int) -> None:
        """Spend ``per_s`` from now on (this replica's part of the deployment's budget)."""
        if per_s == self.per_s:
            return
        self.per_s = per_s
        head = self._head()
        if head is not None:
            head.event.set()  # more room, maybe: the head looks again

    @asynccontextmanager
    async def spend(self, lane: Lane = Lane.SUBMIT) -> AsyncIterator[None]:
        """One request, counted from now until a window after the body leaving this block."""
        counted = await self._take(lane, held=True)
        try:
            yield
        finally:
            if counted:
                self._in_flight -= 1
                self._sent.append(anyio.current_time())

    async def acquire(self, lane: Lane = Lane.SUBMIT) -> None:
        """Wait until one more request fits in the budget, then count it as sent now."""
        await self._take(lane, held=False)

    def _count(self, *, held: bool) -> None:
        if held:
            self._in_flight += 1
        else:
            self._sent.append(anyio.current_time())

    async def _take(self, lane: Lane, *, held: bool) -> bool:
        """Wait for room and count the request; False when there is no limit to count in."""
        if self.per_s <= 0:
            return False
        if not self._head() and self._room():
            self._count(held=held)
            return True
        # Announced and idle polls share one place in line, first come first served: the
        # poller gives announced threads 3 of 4 poll starts, and a strict order here would
        # give idle ones none while a flood of announcements waits.
        me = _Waiter(min(int(lane), int(Lane.ANNOUNCED)), next(self._seq), anyio.Event())
        heapq.heappush(self._waiting, me)
        started = anyio.current_time()
        try:
            await self._wait_turn(me)
        except BaseException:
            me.gone = True  # dropped lazily, when it reaches the head
            raise
        finally:
            head = self._head()
            if head is not None:
                head.event.set()  # the next in line takes over the waiting
        self._count(held=held)
        self.waited_s += anyio.current_time() - started
        return True

    async def _wait_turn(self, me: _Waiter) -> None:
        while True:
            if self._head() is me:
                # First in line: wait for room, unless someone more urgent arrives. With the
                # whole budget in flight, room comes a window after the first answer: look
                # again in a window.
                delay_s = 0.0 if self._room() else (
                    self._sent[0] + self.WINDOW_S - anyio.current_time() if self._sent
                    else self.WINDOW_S)
                with anyio.move_on_after(max(delay_s, 0.0)):
                    await me.event.wait()
                me.rearm()
                if self._head() is me and self._room():
                    heapq.heappop(self._waiting)
                    return
            else:
                await me.event.wait()
                me.rearm()

    def _head(self) -> _Waiter | None:
        while self._waiting and self._waiting[0].gone:
            heapq.heappop(self._waiting)
        return self._waiting[0] if self._waiting else None

    def _room(self) -> bool:
        now = anyio.current_time()
        while self._sent and now - self._sent[0] >= self.WINDOW_S:
            self._sent.popleft()
        return len(self._sent) + self._in_flight < self.per_s

    def used(self) -> int:
        """Requests sent in the current window, or still waiting for their answer."""
        self._room()
        return len(self._sent) + self._in_flight

"""Schedule: when each watched thread is looked at next, in three lanes, and at what pace.

There is no task or timer per thread: one heap of next-look times per lane (active runs,
announced threads, idle threads) drives the poller's single loop. The pace says how soon a
thread is looked at again: soon after a change and less often while nothing changes, sooner
for threads whose runs came lately, later after failures.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from worker.api.budget import Lane

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.config.settings import WatchSettings
    from worker.models import RunStatus

__all__ = ["Pace", "ThreadState", "Timeline"]

# Of the looks started while both announced and idle threads are due, announced ones get
# this many out of four: first, but never all of the budget.
ANNOUNCED_SHARE = 3
# An unchanged active run is looked at this much less often each time (up to the idle pace).
ACTIVE_BACKOFF = 1.25
# A thread whose run was seen within this long is warm: its next run may well come soon.
WARM_S = 60.0
MAX_BACKOFF_S = 60.0


@dataclass(slots=True)
class ThreadState:
    """What the poller knows of one thread; small, since there may be tens of thousands."""

    thread_id: str
    run_id: str | None = None  # the non-terminal run being followed
    busy: bool = False  # a round of this thread is being dispatched: do not poll
    polled: bool = False
    announced: bool = False  # announced and not seen yet
    shared: bool = False  # every replica knows it: its owner among them polls it
    due: float = 0.0  # the live heap entry; older entries of this thread are stale
    failures: int = 0  # polls failed in a row: the thread backs off
    last_status: RunStatus | None = None  # of the followed run, at the last poll
    quiet: int = 0  # polls in a row that saw the followed run unchanged
    warm_until: float = -math.inf  # a run was seen lately: its next one may come soon
    other_action_logged: str | None = None

    @property
    def lane(self) -> Lane:
        if self.run_id is not None:
            return Lane.ACTIVE
        return Lane.ANNOUNCED if self.announced else Lane.IDLE


class Timeline:
    """Heaps of (due, thread) per lane; entries of rescheduled threads go stale, not away."""

    def __init__(self) -> None:
        self._heaps: dict[Lane, list[tuple[float, int, str]]] = {
            lane: [] for lane in (Lane.ACTIVE, Lane.ANNOUNCED, Lane.IDLE)
        }
        self._picks = itertools.count()
        self._seq = itertools.count()
        self._wake = anyio.Event()
        self._sleeping_until = -math.inf

    def schedule(self, state: ThreadState, delay_s: float, *, first: bool = False) -> None:
        """Look at the thread in ``delay_s``; its earlier entries go stale.

        ``first``: now, ahead of every thread already late in its lane (an announcement
        waits behind no backlog of polls).
        """
        due = -math.inf if first else anyio.current_time() + delay_s
        state.due = due
        heapq.heappush(self._heaps[state.lane], (due, next(self._seq), state.thread_id))
        if due < self._sleeping_until:  # the loop sleeps past this: wake it to re-plan
            self._wake.set()

    def wake(self) -> None:
        """Wake a sleeping loop to look again (a slot freed, or it should stop)."""
        self._wake.set()

    def next_due(
        self, open_lanes: set[Lane], lookup: Callable[[str], ThreadState | None]
    ) -> tuple[ThreadState, float] | None:
        """The most urgent thread whose time has come, from a lane with a free slot, and
        how late it is."""
        now = anyio.current_time()
        lanes = [Lane.ACTIVE, Lane.ANNOUNCED, Lane.IDLE]
        if next(self._picks) % 4 >= ANNOUNCED_SHARE:
            lanes = [Lane.ACTIVE, Lane.IDLE, Lane.ANNOUNCED]
        for lane in (lane for lane in lanes if lane in open_lanes):
            heap = self._heaps[lane]
            while heap and heap[0][0] <= now:
                due, _, thread_id = heapq.heappop(heap)
                state = lookup(thread_id)
                if state is None or state.busy or state.due != due or state.lane is not lane:
                    continue  # stale: the thread was rescheduled, or changed lanes
                return state, max(now - due, 0.0) if due > -math.inf else 0.0
        return None

    async def sleep_until_due(self, open_lanes: set[Lane]) -> None:
        """Sleep until the next due time of a lane with a free slot, a wake, or a second."""
        # Only lanes with a free slot: a full lane's head may be due already, and waiting for
        # it would spin; a slot that frees up wakes the loop anyway.
        heads = [heap[0][0] for lane, heap in self._heaps.items() if heap and lane in open_lanes]
        now = anyio.current_time()
        # Wake at least once a second: the heartbeat needs it.
        self._sleeping_until = min([*heads, now + 1.0])
        with anyio.move_on_after(max(self._sleeping_until - now, 0.0)):
            await self._wake.wait()
        self._sleeping_until = -math.inf  # awake: nothing scheduled needs to wake it
        self._wake = anyio.Event()


class Pace:
    """How soon a thread is looked at again, by what its last look saw."""

    def __init__(self, settings: WatchSettings, requests_per_s: int) -> None:
        self._settings = settings
        self._per_s = requests_per_s
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography

    def after_failure(self, state: ThreadState) -> float:
        """Capped exponential backoff with jitter, by the failures in a row."""
        base_s = self._settings.active_poll_interval_s
        cap_s = max(self._settings.idle_poll_interval_s, min(MAX_BACKOFF_S, base_s * 64))
        backoff_s: float = min(cap_s, base_s * 2.0 ** min(state.failures, 16))
        return backoff_s * self._random.uniform(0.5, 1.0)

    def saw_run(self, state: ThreadState) -> None:
        """A run of the thread was seen: the thread is warm for a while."""
        state.warm_until = anyio.current_time() + WARM_S

    def active(self, state: ThreadState, status: RunStatus) -> float:
        """Soon after a change, then less often while the run stays as it was."""
        state.quiet = state.quiet + 1 if state.last_status == status else 0
        state.last_status = status
        delay_s: float = self._settings.active_poll_interval_s * ACTIVE_BACKOFF**state.quiet
        return min(delay_s, self._settings.idle_poll_interval_s)

    def idle(self, state: ThreadState, watched: int) -> float:
        """How long an idle thread waits for its next look.

        A thread whose run was seen lately is warm: runs follow one another, so it is looked
        at every ``min_idle_poll_interval_s``. Cold threads share half of the request budget,
        never looked at less often than ``idle_poll_interval_s``.
        """
        state.last_status, state.quiet = None, 0
        idle_s = self._settings.idle_poll_interval_s
        floor_s = min(self._settings.min_idle_poll_interval_s, idle_s)
        if anyio.current_time() < state.warm_until:
            return floor_s
        share_s = watched / (self._per_s / 2) if self._per_s > 0 else 0.0
        return min(max(share_s, floor_s), idle_s)

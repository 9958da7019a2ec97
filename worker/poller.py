"""Poller: one schedule for every watched thread; a requires_action run becomes a Round."""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import structlog

from .errors import ApiError, AuthError, CoordinationError, NotFound
from .models import Round, Run

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

    from .claims import ClaimStore
    from .client import ApiClient
    from .config import WatchSettings
    from .metrics import Metrics

__all__ = ["Poller"]

log = structlog.get_logger("worker.poller")


@dataclass(slots=True)
class _Watch:
    """What the poller knows of one thread; small, since there may be tens of thousands."""

    thread_id: str
    run_id: str | None = None  # the non-terminal run being followed
    busy: bool = False  # a round of this thread is being dispatched: do not poll
    polled: bool = False
    due: float = 0.0  # the live heap entry; older entries of this thread are stale
    other_action_logged: str | None = None


class Poller:
    """Polls watched threads on one timeline and sends each new round down a stream.

    There is no task or timer per thread: heaps of next-poll times drive a single loop, and
    polls run in a task group bounded by ``max_concurrent_polls``. Each poll pays for its
    request from the client's budget before it starts, and threads with an active run (or
    just announced) come from their own heap first, so a budget spent on thousands of idle
    threads never delays a run that waits for its outputs.
    """

    def __init__(
        self, client: ApiClient, settings: WatchSettings, metrics: Metrics, claims: ClaimStore
    ) -> None:
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._claims = claims
        self._watches: dict[str, _Watch] = {}
        self._unsettled: set[str] = set()  # watches not yet polled, or with a run going on
        self._urgent: list[tuple[float, int, str]] = []  # active runs, announced threads
        self._relaxed: list[tuple[float, int, str]] = []  # threads without an active run
        self._seq = itertools.count()
        self._wake = anyio.Event()
        self._sleeping_until = -math.inf
        self._stopped = anyio.Event()
        self._stopping = False
        # Read by the daemon's readiness check.
        self.auth_failures = 0
        self.consecutive_failures = 0
        # time.monotonic(), not the anyio clock: readiness is also read from a worker thread.
        self.heartbeat = time.monotonic()
        for thread_id in settings.threads:
            self.watch(thread_id, urgent=False)

    def watch(self, thread_id: str, run_id: str | None = None, *, urgent: bool = True) -> None:
        """Follow a thread (and optionally a known run of it) from now on.

        An urgent watch (an announced run) is looked at before every idle thread.
        """
        existing = self._watches.get(thread_id)
        if existing is None:
            self._watches[thread_id] = _Watch(thread_id)
            self._unsettled.add(thread_id)
            self._metrics.watched_threads.set(len(self._watches))
        if run_id is not None and self._watches[thread_id].run_id is None:
            self._set_run(self._watches[thread_id], run_id)
            self._track(self._watches[thread_id])
        self._schedule(thread_id, 0.0, urgent=urgent)

    def round_finished(self, round_: Round, poll_after_s: float | None = None) -> None:
        """The round was submitted (or given up): look at its run again.

        ``poll_after_s`` is the API's hint from the submission's answer; without one the run
        is looked at right away (a failed submission may need its round dispatched again).
        """
        watch = self._watches.get(round_.thread_id)
        if watch is not None:
            watch.busy = False
            self._track(watch)
            delay_s = 0.0 if poll_after_s is None else min(
                poll_after_s, self._settings.idle_poll_interval_s)
            self._schedule(round_.thread_id, delay_s, urgent=True)

    def stop(self) -> None:
        """Stop taking new rounds; ``run`` returns after the polls in progress."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()

    @property
    def idle(self) -> bool:
        """Every thread was polled and none has an active run or a round in flight."""
        return not self._unsettled

    def _track(self, watch: _Watch) -> None:
        """Keep ``idle`` O(1): track which watches still have something going on."""
        if watch.polled and watch.run_id is None and not watch.busy:
            self._unsettled.discard(watch.thread_id)
        else:
            self._unsettled.add(watch.thread_id)

    async def run(self, send: MemoryObjectSendStream[Round], *, until_idle: bool = False) -> None:
        """Poll until stopped (or, with ``until_idle``, until there is nothing left to do)."""
        # A semaphore, not a CapacityLimiter: a slot is taken here and given back by the poll task.
        slots = anyio.Semaphore(self._settings.max_concurrent_polls)
        async with send, anyio.create_task_group() as tg:
            if self._settings.discover:
                await self._discover_once()  # so that an until_idle run sees the threads
                tg.start_soon(self._discover_forever)
            while not self._stopping:
                self.heartbeat = time.monotonic()
                if until_idle and self.idle:
                    # Polls still in flight only look again at threads already seen idle;
                    # with a request budget one is nearly always waiting, so do not wait for it.
                    tg.cancel_scope.cancel()
                    break
                watch = self._next_due()
                if watch is None:
                    await self._sleep_until_due()
                    continue
                await self._client.budget.acquire()  # the poll's one request, paid up front
                await slots.acquire()
                tg.start_soon(self._poll_and_release, watch, send, slots)
            self._stopped.set()  # ends the discovery task, also when the loop ended idle

    async def _discover_forever(self) -> None:
        """Follow every thread the backend lists, looking again every discover_interval_s."""
        while not self._stopped.is_set():
            with anyio.move_on_after(self._settings.discover_interval_s):
                await self._stopped.wait()
            if not self._stopped.is_set():
                await self._discover_once()

    async def _discover_once(self) -> None:
        try:
            await self.discover()
        except ApiError as exc:
            log.warning("listing threads failed", error=str(exc))

    async def discover(self) -> int:
        """Watch every thread the backend lists; returns how many were new."""
        new, after = 0, None
        while True:
            thread_ids, after = await self._client.list_threads(after=after)
            for thread_id in thread_ids:
                if thread_id not in self._watches:
                    new += 1
                    self.watch(thread_id, urgent=False)
            if after is None:
                break
        if new:
            log.info("discovered threads", new=new, watched=len(self._watches))
        return new

    def _next_due(self) -> _Watch | None:
        """The most urgent watch whose time has come; stale heap entries are dropped."""
        now = anyio.current_time()
        for heap in (self._urgent, self._relaxed):
            while heap and heap[0][0] <= now:
                due, _, thread_id = heapq.heappop(heap)
                watch = self._watches.get(thread_id)
                if watch is None or watch.busy or watch.due != due:
                    continue
                self._metrics.poll_lag.observe(now - due)
                return watch
        return None

    async def _sleep_until_due(self) -> None:
        heads = [heap[0][0] for heap in (self._urgent, self._relaxed) if heap]
        now = anyio.current_time()
        self._sleeping_until = min(heads) if heads else now + 1.0
        with anyio.move_on_after(max(self._sleeping_until - now, 0.0)):
            await self._wake.wait()
        self._sleeping_until = -math.inf  # awake: nothing scheduled needs to wake it
        self._wake = anyio.Event()

    def _schedule(self, thread_id: str, delay_s: float, *, urgent: bool) -> None:
        due = anyio.current_time() + delay_s
        self._watches[thread_id].due = due
        heap = self._urgent if urgent else self._relaxed
        heapq.heappush(heap, (due, next(self._seq), thread_id))
        if due < self._sleeping_until:  # the loop sleeps past this: wake it to re-plan
            self._wake.set()

    async def _poll_and_release(
        self, watch: _Watch, send: MemoryObjectSendStream[Round], slots: anyio.Semaphore
    ) -> None:
        try:
            delay_s = await self._poll(watch, send)
        finally:
            if watch.thread_id in self._watches:
                self._track(watch)
            slots.release()
            self._wake.set()  # let an until_idle loop re-check
        if delay_s is not None:
            self._schedule(watch.thread_id, delay_s, urgent=watch.run_id is not None)

    async def _poll(self, watch: _Watch, send: MemoryObjectSendStream[Round]) -> float | None:
        """Look at the thread once; returns when to look again (None: a round took it)."""
        with structlog.contextvars.bound_contextvars(thread_id=watch.thread_id):
            self._metrics.poll_cycles.inc()
            try:
                run = await self._current_run(watch)
            except NotFound:
                return await self._lost(watch)
            except AuthError as exc:
                self.auth_failures += 1
                self.consecutive_failures += 1
                log.error("the API refused the key", error=str(exc))
                return self._settings.idle_poll_interval_s
            except ApiError as exc:
                self.consecutive_failures += 1
                log.warning("polling the thread failed", error=str(exc))
                return self._settings.idle_poll_interval_s
            self.auth_failures = self.consecutive_failures = 0
            watch.polled = True
            try:
                return await self._follow(watch, run, send)
            except CoordinationError as exc:
                log.warning("could not claim the round; trying again", error=str(exc))
                return self._settings.active_poll_interval_s

    async def _current_run(self, watch: _Watch) -> Run | None:
        if watch.run_id is not None:
            return await self._client.retrieve_run(watch.thread_id, watch.run_id, prepaid=True)
        runs = await self._client.list_runs(watch.thread_id, limit=1, prepaid=True)
        return runs[0] if runs else None

    async def _follow(
        self, watch: _Watch, run: Run | None, send: MemoryObjectSendStream[Round]
    ) -> float | None:
        if run is None or run.status.is_terminal:
            if watch.run_id is not None:
                # The run ended: the thread is idle until a new run shows up (or is announced).
                await self._claims.forget_run(watch.run_id)
                self._set_run(watch, None)
            return self._settings.idle_poll_interval_s
        self._set_run(watch, run.id)
        if run.wants_tool_outputs and not self._stopping:
            round_ = Round.from_run(run, detected_at=anyio.current_time())
            if await self._claims.try_claim(round_):
                watch.busy = True
                self._track(watch)  # busy before the round leaves: an idle check must see it
                log.debug("round found", run_id=run.id, tool_calls=len(run.tool_calls))
                await send.send(round_)
                return None
            return self._settings.active_poll_interval_s  # a stale read of a round in hand
        elif (
            run.required_action_type not in (None, "submit_tool_outputs")
            and watch.other_action_logged != run.id
        ):
            watch.other_action_logged = run.id
            self._metrics.runs_skipped.labels("unsupported_action").inc()
            log.info(
                "run waits for an action this worker does not take; leaving it alone",
                run_id=run.id,
                action=run.required_action_type,
            )
        if run.poll_after_ms is not None:
            # The API says when the run will next change: look then, and not before.
            return min(run.poll_after_ms / 1000, self._settings.idle_poll_interval_s)
        return self._settings.active_poll_interval_s

    def _set_run(self, watch: _Watch, run_id: str | None) -> None:
        delta = (run_id is not None) - (watch.run_id is not None)
        watch.run_id = run_id
        if delta:
            self._metrics.active_runs.inc(delta)

    async def _lost(self, watch: _Watch) -> float | None:
        if watch.run_id is not None:
            log.warning("the followed run is gone; looking for the thread's newest run")
            await self._claims.forget_run(watch.run_id)
            self._set_run(watch, None)
            return 0.0
        log.error("thread not found; no longer watching it")
        del self._watches[watch.thread_id]
        self._unsettled.discard(watch.thread_id)
        self._metrics.watched_threads.set(len(self._watches))
        return None

"""Poller: one schedule for every watched thread; a requires_action run becomes a Round."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import structlog

from worker.api.budget import Lane
from worker.errors import ApiError, AuthError, ConfigError, NotFound, WatchLimitReached
from worker.models import Round, Run
from worker.rounds.approvals import AWAITING_APPROVAL
from worker.rounds.schedule import Pace, ThreadState, Timeline
from worker.rounds.scope import OTHER_ASSISTANT, UNKNOWN_TOOL

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anyio.streams.memory import MemoryObjectSendStream

    from worker.api.client import ApiClient
    from worker.api.clock import ApiClock
    from worker.config.settings import WatchSettings
    from worker.observability.health import Health
    from worker.observability.metrics import Metrics
    from worker.rounds.approvals import ApprovalPolicy
    from worker.rounds.scope import Scope

__all__ = ["Poller", "active_run"]

log = structlog.get_logger("worker.rounds.poller")

# Runs read per listing: a server that sorts by whole seconds may list a finished run before
# the new one created in the same second, so one is not enough.
LIST_RUNS_LIMIT = 5
DROPPED_LOG_INTERVAL_S = 10.0


_LEAVING = {
    "unsupported_action": "run waits for an action this worker does not take; leaving it alone",
    OTHER_ASSISTANT: "run is of an assistant this worker does not serve; leaving it alone",
    UNKNOWN_TOOL: "round calls a tool not registered here; leaving it to another deployment",
    AWAITING_APPROVAL: "run waits for a person to approve its tool calls; leaving it alone",
}


def active_run(runs: Iterable[Run]) -> Run | None:
    """The thread's active run among some of its runs, whatever order they were listed in.

    A thread has one active run at a time; should a server show two, the newest wins, and
    of two created in the same second the one that waits for us.
    """
    going = [run for run in runs if not run.status.is_terminal]
    if not going:
        return None
    return max(going, key=lambda run: (run.created_at, run.wants_tool_outputs, run.id))


class Poller:
    """Polls watched threads on one timeline and sends each new round down a stream.

    There is no task or timer per thread: heaps of next-poll times drive a single loop. Each
    lane (active runs, announced threads, idle threads) has its own heap and its own poll
    slots, and its own place in the request budget, so thousands of announced or idle threads
    never delay a run that waits for its outputs.
    """

    def __init__(
        self,
        client: ApiClient,
        settings: WatchSettings,
        metrics: Metrics,
        *,
        health: Health,
        clock: ApiClock,
        scope: Scope | None = None,
        approvals: ApprovalPolicy | None = None,
    ) -> None:
        """Raises ``ConfigError`` when more threads are configured than ``max_threads``.

        Runs outside ``scope`` (another assistant's, or rounds for another deployment's
        tools) are left alone and looked at rarely. Runs waiting for tool approvals become
        rounds when the ``approvals`` policy answers every call, and are left alone otherwise.
        """
        self._scope = scope
        self._approvals = approvals
        if len(settings.threads) > settings.max_threads:
            raise ConfigError(
                f"{len(settings.threads)} threads are configured, more than the limit",
                key="watch.max_threads",
            )
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._health = health
        self._clock = clock
        self._watches: dict[str, ThreadState] = {}
        self._unsettled: set[str] = set()  # watches not yet polled, or with a run going on
        self._timeline = Timeline()
        self._pace = Pace(settings, client.budget.per_s)
        self._stopped = anyio.Event()
        self._stopping = False
        self._refused: set[str] = set()  # threads whose polls the API refuses the key for
        self._dropped: list[str] = []
        self._dropped_logged_at = -math.inf
        for thread_id in settings.threads:
            self._add(thread_id, announced=False)

    def watch(self, thread_id: str, run_id: str | None = None) -> None:
        """Follow an announced thread (and optionally a known run of it) from now on.

        Raises:
            WatchLimitReached: ``max_threads`` threads are watched already.
        """
        watch = self._watches.get(thread_id) or self._add(thread_id, announced=True)
        watch.announced = watch.run_id is None
        if run_id is not None and watch.run_id is None:
            self._set_run(watch, run_id)
            self._track(watch)
        if not watch.busy:
            self._schedule(watch, 0.0)

    def _add(self, thread_id: str, *, announced: bool) -> ThreadState:
        if len(self._watches) >= self._settings.max_threads:
            raise WatchLimitReached(self._settings.max_threads)
        watch = self._watches[thread_id] = ThreadState(thread_id, announced=announced)
        self._unsettled.add(thread_id)
        self._metrics.watched_threads.set(len(self._watches))
        self._schedule(watch, 0.0)
        return watch

    def round_finished(self, round_: Round, poll_after_s: float | None = None) -> None:
        """The round was submitted (or given up): look at its run again.

        ``poll_after_s`` is the API's hint from the submission's answer; without one the run
        is looked at right away. ``math.inf`` says the run is known to have ended: the thread
        is idle, and nothing is read to learn it.
        """
        watch = self._watches.get(round_.thread_id)
        if watch is None:
            return
        watch.busy = False
        if poll_after_s == math.inf:
            self._pace.saw_run(watch)
            self._set_run(watch, None)
            self._track(watch)
            self._schedule(watch, self._pace.idle(watch, len(self._watches)))
            return
        self._track(watch)
        delay_s = 0.0 if poll_after_s is None else min(
            poll_after_s, self._settings.idle_poll_interval_s)
        self._schedule(watch, delay_s)

    def stop(self) -> None:
        """Stop taking new rounds; ``run`` returns after the polls in progress."""
        self._stopping = True
        self._stopped.set()
        self._timeline.wake()

    @property
    def idle(self) -> bool:
        """Every thread was polled and none has an active run or a round in flight."""
        return not self._unsettled

    @property
    def watched(self) -> int:
        """How many threads are watched."""
        return len(self._watches)

    def _track(self, watch: ThreadState) -> None:
        """Keep ``idle`` O(1): track which watches still have something going on."""
        if watch.polled and watch.run_id is None and not watch.busy:
            self._unsettled.discard(watch.thread_id)
        else:
            self._unsettled.add(watch.thread_id)

    async def run(self, send: MemoryObjectSendStream[Round], *, until_idle: bool = False) -> None:
        """Poll until stopped (or, with ``until_idle``, until there is nothing left to do)."""
        # Semaphores, not CapacityLimiters: a slot is taken here and given back by the poll task.
        per_lane = self._settings.max_concurrent_polls
        slots = {lane: anyio.Semaphore(per_lane) for lane in (Lane.ACTIVE, Lane.ANNOUNCED, Lane.IDLE)}
        async with send, anyio.create_task_group() as tg:
            if self._settings.discover:
                await self._discover_once()  # so that an until_idle run sees the threads
                tg.start_soon(self._discover_forever)
            while not self._stopping:
                self._health.heartbeat()
                self._log_dropped()
                if until_idle and self.idle:
                    # Polls still in flight only look again at threads already seen idle.
                    tg.cancel_scope.cancel()
                    break
                open_lanes = {lane for lane, slot in slots.items() if slot.value}
                watch = self._next_due(open_lanes)
                if watch is None:
                    await self._timeline.sleep_until_due(open_lanes)
                    continue
                lane = watch.lane
                await slots[lane].acquire()
                tg.start_soon(self._poll_and_release, watch, lane, send, slots[lane])
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
        except WatchLimitReached as exc:
            log.warning("not following every listed thread", error=str(exc))

    async def discover(self) -> int:
        """Watch every thread the backend lists; returns how many were new.

        Raises:
            WatchLimitReached: the listing holds more threads than ``max_threads``.
        """
        new, after = 0, None
        while True:
            thread_ids, after = await self._client.list_threads(after=after)
            for thread_id in thread_ids:
                if thread_id not in self._watches:
                    new += 1
                    self._add(thread_id, announced=False)
            if after is None:
                break
        if new:
            log.info("discovered threads", new=new, watched=len(self._watches))
        return new

    def _next_due(self, open_lanes: set[Lane]) -> ThreadState | None:
        due = self._timeline.next_due(open_lanes, self._watches.get)
        if due is None:
            return None
        state, lag_s = due
        self._metrics.poll_lag.observe(lag_s)
        return state

    def _schedule(self, watch: ThreadState, delay_s: float) -> None:
        self._timeline.schedule(watch, delay_s)

    async def _poll_and_release(
        self, watch: ThreadState, lane: Lane, send: MemoryObjectSendStream[Round],
        slot: anyio.Semaphore,
    ) -> None:
        try:
            delay_s = await self._poll(watch, lane, send)
        finally:
            if watch.thread_id in self._watches:
                self._track(watch)
            slot.release()
            self._timeline.wake()  # a slot is free, and an until_idle loop may re-check
        if delay_s is not None and watch.thread_id in self._watches:
            self._schedule(watch, delay_s)

    async def _poll(self, watch: ThreadState, lane: Lane, send: MemoryObjectSendStream[Round]) -> float | None:
        """Look at the thread once; returns when to look again (None: a round took it)."""
        with structlog.contextvars.bound_contextvars(thread_id=watch.thread_id):
            self._metrics.poll_cycles.inc()
            try:
                run = await self._current_run(watch, lane)
            except NotFound:
                return self._lost(watch)
            except ApiError as exc:
                return self._failed(watch, exc)
            if watch.failures:
                log.info("the thread answers again", failed_polls=watch.failures)
            watch.failures = 0
            self._key_refused(watch.thread_id, None)
            watch.polled, watch.announced = True, False
            return await self._follow(watch, run, send)

    async def _current_run(self, watch: ThreadState, lane: Lane) -> Run | None:
        # One request, no retries in place: a failure is retried by the schedule, so a hung
        # API holds a poll slot for at most poll_timeout_s.
        timeout_s = self._settings.poll_timeout_s
        if watch.run_id is not None:
            return await self._client.retrieve_run(
                watch.thread_id, watch.run_id, lane=lane, retries=0, timeout_s=timeout_s
            )
        runs = await self._client.list_runs(
            watch.thread_id, limit=LIST_RUNS_LIMIT, lane=lane, retries=0, timeout_s=timeout_s
        )
        return active_run(runs)

    def _failed(self, watch: ThreadState, exc: ApiError) -> float:
        """Count the failure and back the thread off: capped exponential, with jitter."""
        watch.failures += 1
        if isinstance(exc, AuthError):
            self._key_refused(watch.thread_id, exc)
        elif watch.failures == 1:  # once per streak; the metric counts every one
            log.warning("polling the thread failed; backing off", error=str(exc))
        return self._pace.after_failure(watch)

    def _key_refused(self, thread_id: str, error: AuthError | None) -> None:
        """Track per thread whether the key is refused: readiness fails only when it is
        refused for every watched thread, and a key without access to one thread logs once."""
        if error is not None and not self._refused:
            log.error("the API refused the key", error=str(error))
        (self._refused.add if error is not None else self._refused.discard)(thread_id)
        self._health.key_refusals(len(self._refused), len(self._watches))

    async def _follow(
        self, watch: ThreadState, run: Run | None, send: MemoryObjectSendStream[Round]
    ) -> float | None:
        if run is None or run.status.is_terminal:
            # The run ended (if one was followed): the thread is idle until a new run shows up.
            self._set_run(watch, None)
            return self._pace.idle(watch, len(self._watches))
        self._set_run(watch, run.id)
        self._pace.saw_run(watch)
        reason = self._scope.leave_reason(run) if self._scope is not None else None
        if reason is not None:
            return self._leave(watch, run, reason)
        if (run.wants_tool_outputs or self._answers_approvals(run)) and not self._stopping:
            watch.busy = True
            self._track(watch)  # busy before the round leaves: an idle check must see it
            log.debug("round found", run_id=run.id, tool_calls=len(run.tool_calls))
            self._metrics.rounds_found.labels("poll").inc()
            await send.send(Round.from_run(run, anyio.current_time(), api_now=self._clock.now()))
            return None
        if run.required_action_type not in (None, "submit_tool_outputs"):
            return self._other_action(watch, run)
        if run.poll_after_ms is not None:
            # The API says when the run will next change: look then, and not before.
            return min(run.poll_after_ms / 1000, self._settings.idle_poll_interval_s)
        return self._pace.active(watch, run.status)

    def _answers_approvals(self, run: Run) -> bool:
        return self._approvals is not None and self._approvals.answers(run)

    def _other_action(self, watch: ThreadState, run: Run) -> float:
        """A run that waits for something else (tool approvals no rule answers): leave it."""
        if self._approvals is None or not run.wants_approvals:
            return self._leave(watch, run, "unsupported_action")
        if self._approvals.answers(run):  # stopping: not answered now, nor left for a person
            return self._settings.idle_poll_interval_s
        if watch.other_action_logged != run.id:
            self._approvals.record_left(run, self._metrics)
        return self._leave(watch, run, AWAITING_APPROVAL)

    def _leave(self, watch: ThreadState, run: Run, reason: str) -> float:
        """Leave the run to someone else: count and log it once, and look at it rarely."""
        if watch.other_action_logged != run.id:
            watch.other_action_logged = run.id
            self._metrics.runs_skipped.labels(reason).inc()
            log.info(_LEAVING[reason], run_id=run.id, reason=reason,
                     action=run.required_action_type, assistant_id=run.assistant_id,
                     tools=sorted({c.name for c in run.tool_calls}
                                  | {c.name for c in run.approval_calls}))
        return self._settings.idle_poll_interval_s

    def _set_run(self, watch: ThreadState, run_id: str | None) -> None:
        delta = (run_id is not None) - (watch.run_id is not None)
        watch.run_id = run_id
        if delta:
            self._metrics.active_runs.inc(delta)

    def _lost(self, watch: ThreadState) -> float | None:
        if watch.run_id is not None:
            log.warning("the followed run is gone; looking for the thread's newest run")
            self._set_run(watch, None)
            return 0.0
        # Not found: one summary line per interval, not one per id (a flood of bogus
        # announcements would otherwise flood the log too).
        self._dropped.append(watch.thread_id)
        del self._watches[watch.thread_id]
        self._key_refused(watch.thread_id, None)
        self._unsettled.discard(watch.thread_id)
        self._metrics.watched_threads.set(len(self._watches))
        self._metrics.threads_dropped.inc()
        return None

    def _log_dropped(self) -> None:
        now = anyio.current_time()
        if not self._dropped or now - self._dropped_logged_at < DROPPED_LOG_INTERVAL_S:
            return
        log.warning("threads not found; no longer watching them", threads=len(self._dropped),
                    examples=self._dropped[:3])
        self._dropped.clear()
        self._dropped_logged_at = now

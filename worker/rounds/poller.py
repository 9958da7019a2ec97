"""Poller: one schedule for every watched thread; a requires_action run becomes a Round."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import anyio
import structlog

from worker.api.budget import Lane
from worker.errors import ApiError, AuthError, ConfigError, NotFound, WatchLimitReached
from worker.models import Round, Run, RunStatus
from worker.rounds.approvals import AWAITING_APPROVAL
from worker.rounds.discovery import Discovery
from worker.rounds.following import WatchedThreads
from worker.rounds.ownership import Ownership
from worker.rounds.schedule import Pace, ThreadState, Timeline
from worker.rounds.scope import UNSUPPORTED_ACTION, active_run, record_left
from worker.service.api_health import NOT_FOUND_HINT

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

    from worker.api.clock import ApiClock
    from worker.api.protocol import RoundsApi
    from worker.config.settings import WatchSettings
    from worker.observability.health import Health
    from worker.observability.metrics import Metrics
    from worker.rounds.approvals import ApprovalPolicy
    from worker.rounds.live import LiveStreams
    from worker.rounds.scope import Scope
    from worker.service.membership import Membership

__all__ = ["Poller", "active_run"]

log = structlog.get_logger("worker.rounds.poller")

# Runs read per listing: a server that sorts by whole seconds may list a finished run before
# the new one created in the same second, so one is not enough.
LIST_RUNS_LIMIT = 5
DROPPED_LOG_INTERVAL_S = 10.0


class Poller(WatchedThreads):
    """Polls watched threads on one timeline and sends each new round down a stream.

    There is no task or timer per thread: heaps of next-poll times drive a single loop. Each
    lane (active runs, announced threads, idle threads) has its own heap and its own poll
    slots, and its own place in the request budget, so thousands of announced or idle threads
    never delay a run that waits for its outputs.
    """

    def __init__(
        self, client: RoundsApi, settings: WatchSettings, metrics: Metrics, *, health: Health,
        clock: ApiClock, scope: Scope | None = None, approvals: ApprovalPolicy | None = None,
        streams: LiveStreams | None = None, membership: Membership | None = None,
    ) -> None:
        """Raises ``ConfigError`` when more threads are configured than ``max_threads``.

        Runs outside ``scope`` (another assistant's, or rounds for another deployment's
        tools) are left alone and looked at rarely. Runs waiting for tool approvals become
        rounds when the ``approvals`` policy answers every call, and are left alone otherwise.
        With ``streams`` (sessions), a thread whose live stream is open is not polled: its
        stream brings its changes (``stream_event``). ``membership``: see ``Ownership``.
        """
        configured = (*settings.threads, *settings.sessions)
        if len(configured) > settings.max_threads:
            raise ConfigError(f"{len(configured)} threads are configured, more than the limit",
                              key="watch.max_threads")
        self._client, self._settings, self._metrics = client, settings, metrics
        self._health, self._clock = health, clock
        self._scope, self._approvals, self._streams = scope, approvals, streams
        self._watches: dict[str, ThreadState] = {}
        self._unsettled: set[str] = set()  # watches not yet polled, or with a run going on
        self._timeline = Timeline()
        self._pace = Pace(settings, client.budget.total_per_s)  # the deployment's: all threads
        self._stopped, self._stopping = anyio.Event(), False
        self._refused: set[str] = set()  # threads whose polls the API refuses the key for
        self._dropped: list[str] = []
        self._dropped_logged_at = -math.inf
        self._held_back: dict[str, Run] = {}  # streamed while a round was out: seen after it
        self._send: MemoryObjectSendStream[Round] | None = None
        self._discovery = Discovery(client, settings.discover_interval_s,
                                    known=self._watches.__contains__,
                                    add=functools.partial(self.watch, announced=False),
                                    health=health, metrics=metrics,
                                    max_pages=settings.discover_max_pages, membership=membership)
        self._owners = Ownership(membership, self._watches, self._unsettled, self._timeline.schedule,
                                 store_shared=settings.store in ("auto", "redis"))
        for thread_id in configured:
            self._add(thread_id, announced=False).shared = self._owners.shared

    def watch(self, thread_id: str, run_id: str | None = None, *, announced: bool = True) -> None:
        """Follow a thread (and a known run of it); ``announced`` ones are looked at first.

        Raises:
            WatchLimitReached: ``max_threads`` threads are watched already.
        """
        new = thread_id not in self._watches
        watch = self._watches.get(thread_id) or self._add(thread_id, announced=announced)
        # Announced: looked at here first, whoever owns it; stored, so every replica knows it.
        watch.announced = announced or watch.announced
        watch.shared = watch.shared or self._owners.from_store
        if run_id is not None and watch.run_id is None:
            self._set_run(watch, run_id)
            self._track(watch)
        # A new thread with a stream to come is read once it opens; a live one needs no read.
        streamed = self._streams is not None and (new or self._is_live(watch))
        if not watch.busy and not streamed:
            self._timeline.schedule(watch, 0.0, first=announced)

    def _add(self, thread_id: str, *, announced: bool) -> ThreadState:
        if len(self._watches) >= self._settings.max_threads:
            raise WatchLimitReached(self._settings.max_threads)
        watch = self._watches[thread_id] = ThreadState(thread_id, announced=announced)
        self._unsettled.add(thread_id)
        self._metrics.watched_threads.set(len(self._watches))
        if self._streams is None:
            self._timeline.schedule(watch, 0.0)
        else:  # read once the stream is open; polled in a while should it never open
            self._streams.want(thread_id)
            self._timeline.schedule(watch, self._settings.min_idle_poll_interval_s)
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
        if self._is_live(watch):
            self._after_streamed_round(watch, round_, poll_after_s)
            return
        if poll_after_s == math.inf:
            self._pace.saw_run(watch)
            self._set_run(watch, None)
            self._track(watch)
            self._timeline.schedule(watch, self._pace.idle(watch, len(self._watches)))
            return
        self._track(watch)
        delay_s = 0.0 if poll_after_s is None else min(
            poll_after_s, self._settings.idle_poll_interval_s)
        self._timeline.schedule(watch, delay_s)

    def stop(self) -> None:
        """Stop taking new rounds; ``run`` returns after the polls in progress."""
        self._owners.stop()
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
        self._send = send
        async with send, anyio.create_task_group() as tg:
            if self._settings.discover:
                await self._discovery.once()  # so that an until_idle run sees the threads
                tg.start_soon(self._discovery.forever, self._stopped)
            if self._streams is not None:
                tg.start_soon(self._streams.run, self, self._stopped)
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

    def _next_due(self, open_lanes: set[Lane]) -> ThreadState | None:
        due = self._timeline.next_due(open_lanes, self._owners.lookup)
        if due is None:
            return None
        state, lag_s = due
        self._metrics.poll_lag.observe(lag_s)
        return state

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
        live = self._is_live(watch) and not watch.failures  # a failed read is read again
        if delay_s is not None and watch.thread_id in self._watches and not live:
            self._timeline.schedule(watch, delay_s)

    async def _poll(self, watch: ThreadState, lane: Lane, send: MemoryObjectSendStream[Round]) -> float | None:
        """Look at the thread once; returns when to look again (None: a round took it)."""
        with structlog.contextvars.bound_contextvars(thread_id=watch.thread_id):
            self._metrics.poll_cycles.inc()
            try:
                run = await self._current_run(watch, lane)
            except NotFound:
                return self._lost(watch)
            except Exception as exc:  # noqa: BLE001 - an answer no one foresaw costs one poll
                return self._failed(watch, exc)
            if watch.failures:
                log.info("the thread answers again", failed_polls=watch.failures)
            watch.failures = 0
            self._key_refused(watch.thread_id, None)
            watch.polled, watch.announced = True, False
            if self._streams is not None and (run is None or run.status is not RunStatus.FAILED):
                self._streams.want(watch.thread_id)  # it can do work: stream it when one is free
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

    def _failed(self, watch: ThreadState, exc: Exception) -> float:
        """Count the failure and back the thread off: capped exponential, with jitter."""
        watch.failures += 1
        if isinstance(exc, AuthError):
            self._key_refused(watch.thread_id, exc)
        elif watch.failures == 1:  # once per streak; the metric counts every one
            log.warning("polling the thread failed; backing off", error=str(exc) or repr(exc),
                        exc_info=not isinstance(exc, ApiError))  # not an API error: our bug
        return self._pace.after_failure(watch)

    def _key_refused(self, thread_id: str, error: AuthError | None) -> None:
        """Track per thread whether the key is refused: readiness fails only when it is
        refused for every watched thread, and a key without access to one thread logs once."""
        if error is not None and not self._refused:
            log.error("the API refused the key", error=str(error))
        (self._refused.add if error is not None else self._refused.discard)(thread_id)
        self._health.key_refusals(len(self._refused), len(self._watches))

    async def _follow(
        self, watch: ThreadState, run: Run | None, send: MemoryObjectSendStream[Round],
        found_by: str = "poll",
    ) -> float | None:
        if watch.busy:  # a stream brought this round while the poll was out
            return None
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
            log.debug("round found", run_id=run.id, tool_calls=len(run.tool_calls), by=found_by)
            self._metrics.rounds_found.labels(found_by).inc()
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
            return self._leave(watch, run, UNSUPPORTED_ACTION)
        if self._approvals.answers(run):  # stopping: not answered now, nor left for a person
            return self._settings.idle_poll_interval_s
        if watch.other_action_logged != run.id:
            self._approvals.record_left(run, self._metrics)
        return self._leave(watch, run, AWAITING_APPROVAL)

    def _leave(self, watch: ThreadState, run: Run, reason: str) -> float:
        """Leave the run to someone else: count and log it once, and look at it rarely."""
        if watch.other_action_logged != run.id:
            watch.other_action_logged = run.id
            record_left(run, reason, self._metrics)
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
        self._remove(watch.thread_id)
        self._metrics.threads_dropped.inc()
        return None

    def _log_dropped(self) -> None:
        now = anyio.current_time()
        if not self._dropped or now - self._dropped_logged_at < DROPPED_LOG_INTERVAL_S:
            return
        # None left: the URL is likelier wrong than every thread gone.
        log.warning("threads not found; no longer watching them" if self._watches else
                    f"threads not found, none left to watch: {NOT_FOUND_HINT}",
                    threads=len(self._dropped), examples=self._dropped[:3])
        self._dropped.clear()
        self._dropped_logged_at = now

    # Live streams (sessions): each is read as a poll would be, and replaces the thread's polls.

    def _is_live(self, watch: ThreadState) -> bool:
        return self._streams is not None and self._streams.is_live(watch.thread_id)

    def stream_opened(self, thread_id: str) -> None:
        """Read the thread now: what happened before the stream opened is not replayed."""
        watch = self._watches.get(thread_id)
        if watch is not None and not watch.busy:
            self._timeline.schedule(watch, 0.0)

    def stream_closed(self, thread_id: str) -> None:
        """Poll the thread on the schedule until its stream is open again."""
        watch = self._watches.get(thread_id)
        if watch is not None and not watch.busy:
            self._timeline.schedule(watch, 0.0 if watch.run_id else self._pace.idle(watch, self.watched))

    async def stream_event(self, thread_id: str, run: Run) -> None:
        """The thread as its stream showed it: a round to take, or a change to note."""
        watch = self._watches.get(thread_id)
        if watch is None or self._send is None or self._stopping:
            return
        if watch.busy:  # the round's end decides what this means
            self._held_back[thread_id] = run
            return
        watch.polled, watch.announced = True, False
        watch.due = math.inf  # the stream spoke: no read is due (older heap entries go stale)
        await self._follow(watch, run, self._send, found_by="stream")
        self._track(watch)

    def _after_streamed_round(
        self, watch: ThreadState, round_: Round, poll_after_s: float | None
    ) -> None:
        """A streamed thread's round is done: apply what its stream showed meanwhile; if
        nothing yet, read it after ``idle_poll_interval_s`` unless an event comes first."""
        run = self._held_back.pop(watch.thread_id, None)
        if run is not None and run.status.is_terminal:
            self._set_run(watch, None)
        if run is not None and run.wants_tool_outputs and run.call_ids != round_.call_ids:
            self._timeline.schedule(watch, 0.0)  # the next round came before this one was done: read it
        elif poll_after_s is not None and poll_after_s != math.inf:
            self._timeline.schedule(watch, poll_after_s)  # not claimed here: look again, as when polled
        elif run is None:
            self._timeline.schedule(watch, self._settings.idle_poll_interval_s)
        self._track(watch)

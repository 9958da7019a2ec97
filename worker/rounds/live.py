"""LiveStreams: one live event stream per watched session, up to ``[api] max_streams``.

A protocol that pushes changes (the Agents API's ``GET /agents/sessions/{id}/events``) lets
the worker find a round the moment it is asked for, with no request. Each stream's status
events go to the poller as if a poll had read them. Streams carry no resume cursor, so after
every (re)connect the poller reads the session once: nothing that happened while the stream
was down is missed, and nothing is found twice (a round is dispatched once, by its claim).
Past the cap, or while a stream is down, the session is polled on the poller's schedule; a
broken stream is opened again after a backoff. A stream refused with 404 for a session that
polls fine (a server without the events endpoint) is not asked for again for five minutes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

import anyio
import structlog

from worker.api.protocol import LiveEvents
from worker.api.retry import RetryPolicy
from worker.api.sse import QUIET_END_S
from worker.errors import ApiError, BadAnswer, NotFound
from worker.models import RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.models import Run

__all__ = ["REFUSED_STREAM_RETRY_S", "LiveStreams", "StreamListener", "live_streams"]

# How long a session whose stream was refused 404 is polled before its stream is asked again.
REFUSED_STREAM_RETRY_S = 300.0

log = structlog.get_logger("worker.rounds.live")


def live_streams(client: object) -> LiveStreams | None:
    """Streams for a client whose protocol has live events (sessions); None for others."""
    return LiveStreams(client) if isinstance(client, LiveEvents) else None


class StreamListener(Protocol):
    """What the poller does with a stream: read the thread, take a change, poll again."""

    def stream_opened(self, thread_id: str) -> None:
        """The stream is open: read the thread now (events are not replayed)."""

    async def stream_event(self, thread_id: str, run: Run) -> None:
        """The thread as an event showed it."""

    def stream_closed(self, thread_id: str) -> None:
        """The stream is down: poll the thread on the schedule until it is open again."""


class LiveStreams:
    """Holds a stream open for each wanted thread while fewer than ``max_streams`` are open."""

    def __init__(
        self, events: LiveEvents, *, retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._events = events
        self._clock = clock
        self._refused: dict[str, float] = {}  # thread -> when its stream may be asked again
        self._limit = events.max_streams
        self._retry = retry or RetryPolicy(0, base_s=0.5, cap_s=30.0)
        self._waiting: dict[str, None] = {}  # wanted, no stream yet: first come, first served
        self._followed: dict[str, anyio.CancelScope] = {}
        self._live: set[str] = set()
        self._wake = anyio.Event()

    def want(self, thread_id: str) -> None:
        """Stream the thread as soon as a stream is free (nothing if it is streamed already)."""
        if thread_id in self._refused:
            if self._refused[thread_id] > self._clock():
                return  # its stream was refused a while ago: a poll per interval does
            del self._refused[thread_id]
        if thread_id not in self._followed and thread_id not in self._waiting:
            self._waiting[thread_id] = None
            self._wake.set()

    def drop(self, thread_id: str) -> None:
        """Stop streaming the thread (it is no longer watched)."""
        self._waiting.pop(thread_id, None)
        self._refused.pop(thread_id, None)
        scope = self._followed.get(thread_id)
        if scope is not None:
            scope.cancel()

    def is_live(self, thread_id: str) -> bool:
        """Whether the thread's stream is open now: its changes come without polls."""
        return thread_id in self._live

    @property
    def open(self) -> int:
        return len(self._followed)

    async def run(self, listener: StreamListener, stopped: anyio.Event) -> None:
        """Open streams as threads are wanted and streams are free, until ``stopped``."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._open_streams, listener, tg)
            await stopped.wait()
            tg.cancel_scope.cancel()

    async def _open_streams(self, listener: StreamListener, tg: anyio.abc.TaskGroup) -> None:
        while True:
            while self._waiting and len(self._followed) < self._limit:
                thread_id = next(iter(self._waiting))
                del self._waiting[thread_id]
                self._followed[thread_id] = anyio.CancelScope()
                tg.start_soon(self._follow, thread_id, listener)
            self._wake = anyio.Event()
            await self._wake.wait()

    async def _follow(self, thread_id: str, listener: StreamListener) -> None:
        """Keep the thread's stream open, again after each break, until it cannot do work."""
        scope = self._followed[thread_id]
        try:
            with scope, structlog.contextvars.bound_contextvars(thread_id=thread_id):
                failures = 0
                while True:
                    error, ended = await self._listen(thread_id, listener)
                    if isinstance(error, NotFound):
                        # Gone (the poller drops it), or a server without streams.
                        self._refused[thread_id] = self._clock() + REFUSED_STREAM_RETRY_S
                        break
                    if ended:
                        break  # failed: polled from now on
                    failures = failures + 1 if error is not None else 0
                    await anyio.sleep(self._retry.delay_s(failures, error))
        finally:
            del self._followed[thread_id]
            self._wake.set()  # a stream is free

    async def _listen(
        self, thread_id: str, listener: StreamListener
    ) -> tuple[ApiError | None, bool]:
        """One stream, until it ends: the error that ended it (None: it just ended), and
        whether the session failed (it does no more work; the poller watches it)."""
        opened, events = self._clock(), 0
        try:
            async with self._events.live_events(thread_id) as runs:
                self._live.add(thread_id)
                listener.stream_opened(thread_id)
                async for run in runs:
                    events += 1
                    await listener.stream_event(thread_id, run)
                    if run.status is RunStatus.FAILED:
                        return None, True
        except ApiError as exc:
            log.info("could not open the session's event stream; polling it", error=str(exc))
            return exc, False
        except Exception as exc:  # an event no one foresaw costs this stream, not the daemon
            log.warning("the session's event stream failed unexpectedly; polling it",
                        exc_info=True)
            return BadAnswer("session_events", repr(exc)), False
        finally:
            self._live.discard(thread_id)
            listener.stream_closed(thread_id)
        if not events and self._clock() - opened < QUIET_END_S:  # a failure: back off
            log.info("the session's event stream ended at once, with no event; polling it")
            return BadAnswer("session_events", "the stream ended at once, with no event"), False
        return None, False

"""LiveStreams: a stream per wanted session; a server without streams is not asked each poll."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from worker.errors import NotFound
from worker.rounds.live import REFUSED_STREAM_RETRY_S, LiveStreams

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from worker.models import Run

pytestmark = pytest.mark.anyio


class NoStreams:
    """A server that polls fine but answers 404 to every events stream."""

    max_streams = 10

    def __init__(self) -> None:
        self.opened = 0

    @asynccontextmanager
    async def live_events(self, thread_id: str) -> AsyncIterator[AsyncIterator[Run]]:
        self.opened += 1
        raise NotFound(404, "session_events", "no such endpoint")
        yield  # pragma: no cover


class Listener:
    def __init__(self) -> None:
        self.closed = 0
        self.closed_event = anyio.Event()

    def stream_opened(self, thread_id: str) -> None:
        raise AssertionError("a refused stream is never open")

    async def stream_event(self, thread_id: str, run: Run) -> None:
        raise AssertionError("a refused stream has no events")

    def stream_closed(self, thread_id: str) -> None:
        self.closed += 1
        self.closed_event.set()


async def test_a_stream_refused_404_is_not_asked_again_until_a_while_has_passed() -> None:
    now = [1000.0]
    server, listener = NoStreams(), Listener()
    streams = LiveStreams(server, clock=lambda: now[0])
    stopped = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(streams.run, listener, stopped)
        streams.want("sess_1")
        with anyio.fail_after(5):
            await listener.closed_event.wait()
        for _ in range(50):  # a poll per interval, each saying the session can do work
            streams.want("sess_1")
            await anyio.lowlevel.checkpoint()
        assert server.opened == 1
        now[0] += REFUSED_STREAM_RETRY_S + 1
        listener.closed_event = anyio.Event()
        streams.want("sess_1")
        with anyio.fail_after(5):
            await listener.closed_event.wait()
        assert server.opened == 2
        stopped.set()


async def test_a_dropped_session_forgets_its_refusal() -> None:
    server, listener = NoStreams(), Listener()
    streams = LiveStreams(server, clock=lambda: 0.0)
    stopped = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(streams.run, listener, stopped)
        streams.want("sess_1")
        with anyio.fail_after(5):
            await listener.closed_event.wait()
        streams.drop("sess_1")  # unwatched, then announced again: its stream is tried at once
        listener.closed_event = anyio.Event()
        streams.want("sess_1")
        with anyio.fail_after(5):
            await listener.closed_event.wait()
        assert server.opened == 2
        stopped.set()

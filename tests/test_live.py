"""LiveStreams: a stream per wanted session; a server without streams is not asked each poll."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
from aiohttp import web

from tests.test_agents_client import KEY, SESSION, served
from worker.api.agents import SessionsClient
from worker.api.backends import build_profile
from worker.api.retry import RetryPolicy
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import ApiError, NotFound
from worker.observability.metrics import Metrics
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

    async def next_close(self) -> None:
        """Wait (5 s at most) for a stream to close; the next call waits for the one after."""
        with anyio.fail_after(5):
            await self.closed_event.wait()
        self.closed_event = anyio.Event()


async def test_a_stream_refused_404_is_not_asked_again_until_a_while_has_passed() -> None:
    now = [1000.0]
    server, listener = NoStreams(), Listener()
    streams = LiveStreams(server, clock=lambda: now[0])
    stopped = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(streams.run, listener, stopped)
        streams.want("sess_1")
        await listener.next_close()
        for _ in range(50):  # a poll per interval, each saying the session can do work
            streams.want("sess_1")
            await anyio.lowlevel.checkpoint()
        assert server.opened == 1
        now[0] += REFUSED_STREAM_RETRY_S + 1
        streams.want("sess_1")
        await listener.next_close()
        assert server.opened == 2
        stopped.set()


async def test_a_dropped_session_forgets_its_refusal() -> None:
    server, listener = NoStreams(), Listener()
    streams = LiveStreams(server, clock=lambda: 0.0)
    stopped = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(streams.run, listener, stopped)
        streams.want("sess_1")
        await listener.next_close()
        streams.drop("sess_1")  # unwatched, then announced again: its stream is tried at once
        streams.want("sess_1")
        await listener.next_close()
        assert server.opened == 2
        stopped.set()


class NoWait(RetryPolicy):
    """No delay at all, and the attempt numbers asked for: the backoff the streams would use."""

    def __init__(self) -> None:
        super().__init__(0)
        self.attempts: list[int] = []
        self.asked = anyio.Event()

    def delay_s(self, attempt: int, error: ApiError | None = None) -> float:
        self.attempts.append(attempt)
        if len(self.attempts) >= 4:
            self.asked.set()
        return 0.0


class Opened:
    def __init__(self) -> None:
        self.opened = 0

    def stream_opened(self, thread_id: str) -> None:
        self.opened += 1

    async def stream_event(self, thread_id: str, run: Run) -> None:
        raise AssertionError("the stream has no events")

    def stream_closed(self, thread_id: str) -> None:
        pass


async def test_a_stream_that_ends_at_once_backs_off_and_counts_as_broken() -> None:
    """200 text/event-stream and a clean end, no event: it was reopened after 0 to 0.25 s
    every time (failures reset to 0), about ten requests a second per session, uncounted."""

    async def empty(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write_eof()
        return response

    retry, listener, stopped, metrics = NoWait(), Opened(), anyio.Event(), Metrics()
    async with served(("GET", "/v1/agents/sessions/sess_1/events", empty)) as server:
        settings = ApiSettings(backend="agents", base_url=f"{server.url}/v1")
        async with SessionsClient(build_profile(settings, Secret(KEY)), settings,
                                  metrics) as client, anyio.create_task_group() as tg:
            streams = LiveStreams(client, retry=retry)
            tg.start_soon(streams.run, listener, stopped)
            streams.want(SESSION)
            with anyio.fail_after(5):
                await retry.asked.wait()
            stopped.set()
    broken = metrics.registry.get_sample_value("toolworker_streams_broken_total") or 0
    assert retry.attempts[:4] == [1, 2, 3, 4]  # was [0, 0, 0, 0]: no backoff at all
    assert broken >= 4
    assert listener.opened >= 4

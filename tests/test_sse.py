"""Server-sent events: parsed the same however the bytes are split, within bounds in time and size.

Issue #25: one huge streamed event cost seconds of CPU before the cap stopped it (its start
was searched again at every chunk), and a stream that never ended held its slot for ever.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio
import pytest
from aiohttp import web

from tests.conftest import ServedApp
from tests.test_client import run_json
from worker.api.backends import build_profile
from worker.api.client import ApiClient
from worker.api.sse import Event, read_events
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import BadAnswer
from worker.models import CallOutcome, ToolOutput
from worker.observability.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

STREAM = (b": keep-alive\r\n\r\nevent: thread.run.queued\r\ndata: {\"a\": 1}\r\n\r\n"
          b"event: thread.run.step.delta\ndata: line one\ndata: line two\n\n"
          b"data: unnamed\n\nevent: done\ndata: [DONE]\n\n")
EXPECTED = [Event("thread.run.queued", '{"a": 1}'),
            Event("thread.run.step.delta", "line one\nline two"),
            Event("message", "unnamed"), Event("done", "[DONE]")]


async def from_chunks(chunks: Sequence[bytes], pulled: list[int] | None = None
                      ) -> AsyncIterator[bytes]:
    for chunk in chunks:
        if pulled is not None:
            pulled.append(len(chunk))
        yield chunk


async def events_of(chunks: Sequence[bytes], cap: int = 1 << 20) -> list[Event]:
    return [event async for event in read_events(from_chunks(chunks), endpoint="submit",
                                                  max_event_bytes=cap)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, len(STREAM)])
async def test_events_are_the_same_however_the_bytes_are_split(size: int) -> None:
    """Split anywhere, a CRLF or a blank line across two chunks included."""
    chunks = [STREAM[i:i + size] for i in range(0, len(STREAM), size)]
    assert await events_of(chunks) == EXPECTED


async def test_a_huge_event_is_refused_as_soon_as_it_passes_the_cap() -> None:
    """The reader stops pulling once the pending event is over the cap: no more than one
    chunk past it is read, and nothing of it is parsed."""
    cap, piece = 64 * 1024, b"x" * 1024
    pulled: list[int] = []
    chunks = [b"event: thread.run.in_progress\ndata: ", *[piece] * 1000]
    with pytest.raises(BadAnswer, match="over 65536 bytes"):
        async for _ in read_events(from_chunks(chunks, pulled), endpoint="submit",
                                   max_event_bytes=cap):
            pass
    assert sum(pulled) <= cap + 2 * len(piece)


async def test_a_stream_that_never_ends_is_given_up_after_stream_max_s() -> None:
    """Events (here comments) trickle in for ever: after stream_max_s the submission returns
    None (the outputs were accepted; the caller polls the run), and it counts as broken."""
    served_for_ever = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"event: thread.run.queued\ndata: " +
                             json.dumps(run_json("queued")).encode() + b"\n\n")
        while not served_for_ever.is_set():
            await response.write(b": still here\n\n")
            await anyio.sleep(0.01)
        return response

    app = web.Application()
    app.router.add_post("/v1/threads/thread_1/runs/run_1/submit_tool_outputs", handler)
    metrics = Metrics()
    async with ServedApp(app) as server:
        settings = ApiSettings(base_url=f"{server.url}/v1", stream_max_s=0.3,
                               stream_idle_timeout_s=30)
        async with ApiClient(build_profile(settings, Secret("sk-test-stream-123")), settings,
                             metrics) as client:
            with anyio.fail_after(10):
                result = await client.submit_tool_outputs_streaming(
                    "thread_1", "run_1", [ToolOutput("call_1", "2", "add", CallOutcome.OK, 0.01)])
        served_for_ever.set()
    assert result is None
    assert metrics.registry.get_sample_value("toolworker_streams_broken_total") == 1

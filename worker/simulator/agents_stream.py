"""Live server-sent events of an Agents API session (`GET /agents/sessions/{id}/events`).

Each event is one `data: <json>` frame, discriminated by its `type`: no `event:` line and no
`id:` line, because the SDK's parser turns an `event:`-only frame, and (once an `id:` was seen)
a comment frame, into `json.loads("")`. A `: keepalive` comment goes out after a quiet while.

The stream is live only: it carries what happens from the moment it is open, nothing before
(a client reads `GET /agents/sessions/{id}` for the state). It stays open until the client
leaves or the simulator stops; a streaming session create (`"stream": true`) ends at the first
`agent.session.idle` or `agent.session.failed`, with `data: [DONE]`.

The plan's stream faults strike here too: `cut_before_apply` closes the connection before any
answer, `cut_after_apply` after the 200 headers, `cut_mid_stream` after the first event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import string
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from worker.simulator.agents_lifecycle import EventSink
from worker.simulator.agents_state import AgentsState
from worker.simulator.replies import DEPS
from worker.simulator.streaming import REQUEST_FAULT, REQUEST_ID
from worker.simulator.wire import RequestRefused

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.simulator.agents_records import SessionRecord

__all__ = ["AGENTS", "agents_of", "stream_session"]

AGENTS = web.AppKey("agents", AgentsState)
# The longest nap between looks at the session, so that an injected clock is followed promptly.
_MAX_NAP_S = 0.25
KEEPALIVE_S = 15.0
_DONE = b"data: [DONE]\n\n"
_ENDS_CREATE_STREAM = frozenset({"agent.session.idle", "agent.session.failed"})
_CUTS = frozenset({"cut_before_apply", "cut_after_apply", "cut_mid_stream"})
_PAD = string.ascii_letters + string.digits


def agents_of(request: web.Request) -> AgentsState:
    """The Agents API account the request is served from."""
    return request.app[AGENTS]


def _stream_fault(request: web.Request) -> str | None:
    fault = REQUEST_FAULT.get()
    if fault is None or fault.kind not in _CUTS:
        return None
    request.app[DEPS].faults.record(request.match_info.route.name or "", fault.kind)
    return fault.kind


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


async def stream_session(
    request: web.Request,
    open_session: Callable[[EventSink], SessionRecord],
    *,
    obfuscate: bool = True,
    until_idle: bool = False,
) -> web.StreamResponse:
    """Open the session (`open_session` registers the sink, or refuses), then stream its events.

    A refusal is answered with the usual JSON error, before any event.
    """
    state = agents_of(request)
    kind = _stream_fault(request)
    if kind == "cut_before_apply":
        _cut(request)
        return web.Response(status=500)
    sink = EventSink()
    session = open_session(sink)
    try:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "x-request-id": REQUEST_ID.get(),
        })
        await response.prepare(request)
        if kind == "cut_after_apply":
            _cut(request)
            return response
        await _pump(request, response, state, session.id, sink,
                    obfuscate=obfuscate, until_idle=until_idle, cut_mid=kind == "cut_mid_stream")
        return response
    except (ConnectionResetError, ConnectionError):
        return web.Response(status=500)  # the client left; nothing to answer
    finally:
        state.unwatch(session.id, sink)


def _frame(event: dict[str, Any], obfuscate: bool) -> bytes:
    if obfuscate:
        # Random padding, as the API adds against length side channels (`obfuscation`).
        event = {**event, "obfuscation": "".join(random.choices(_PAD, k=random.randint(4, 16)))}  # noqa: S311
    return f"data: {json.dumps(event)}\n\n".encode()


async def _pump(request: web.Request, response: web.StreamResponse, state: AgentsState,
                session_id: str, sink: EventSink, *, obfuscate: bool, until_idle: bool,
                cut_mid: bool) -> None:
    last_write = time.monotonic()
    while not sink.closed and not (request.transport is None or request.transport.is_closing()):
        try:
            session = state.session(session_id)  # applies what time has done, into `sink`
        except RequestRefused as exc:  # deleted under the stream
            await response.write(_frame({"type": "error", "event_id": state.new_id("evt_"),
                                         "session_id": session_id, **exc.body()}, obfuscate))
            return
        events, sink.events = sink.events, []
        sink.wake.clear()
        for event in events:
            await response.write(_frame(event, obfuscate))
            last_write = time.monotonic()
            if cut_mid:
                _cut(request)
                return
            if until_idle and event["type"] in _ENDS_CREATE_STREAM:
                await response.write(_DONE)
                await response.write_eof()
                return
        if events:
            continue
        if time.monotonic() - last_write >= KEEPALIVE_S:
            await response.write(b": keepalive\n\n")
            last_write = time.monotonic()
        await _nap(state, session, sink)


async def _nap(state: AgentsState, session: SessionRecord, sink: EventSink) -> None:
    """Until an event arrives, the session is due to change, or a short while passes."""
    change_at = state.next_change_at(session)
    wait_s = _MAX_NAP_S if change_at is None else change_at - state.clock()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sink.wake.wait(), min(max(wait_s, 0.001), _MAX_NAP_S))

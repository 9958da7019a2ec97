"""Server-sent events of a run: run creation and submit_tool_outputs with `"stream": true`.

The stream opens with the events of what the request did (`thread.run.created`,
`thread.run.queued`), stays open while the scripted model thinks, sends each transition as it
happens (`thread.run.in_progress`, the answer's `thread.message.*`), and ends at the next
`thread.run.requires_action` or a terminal `thread.run.<status>`, then `event: done` /
`data: [DONE]`, as the API's RunStreamEvent and DoneEvent describe.

Three faults of the plan only strike streams (see `FaultRule`): `cut_before_apply` closes the
connection before the request is applied, `cut_after_apply` after it was applied and the 200
headers were sent but before any event, `cut_mid_stream` after the first event.
"""

from __future__ import annotations

import asyncio
import json
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from aiohttp import web

from worker.simulator.replies import DEPS
from worker.simulator.runs import TERMINAL_STATUSES
from worker.simulator.wire import RequestRefused

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from worker.simulator.faults import Fault
    from worker.simulator.store import Event

__all__ = ["REQUEST_FAULT", "REQUEST_ID", "stream_run", "wants_stream"]

# Set by the middleware for the request being served (each request runs in its own task).
REQUEST_FAULT: ContextVar[Fault | None] = ContextVar("sim_request_fault", default=None)
REQUEST_ID: ContextVar[str] = ContextVar("sim_request_id", default="")
# The longest nap between looks at the run, so that an injected clock is followed promptly.
_MAX_NAP_S = 0.05
_DONE = b"event: done\ndata: [DONE]\n\n"
_STREAM_CUTS = frozenset({"cut_before_apply", "cut_after_apply", "cut_mid_stream"})


def wants_stream(body: object) -> bool:
    """Whether the request body asks for server-sent events."""
    return isinstance(body, dict) and body.get("stream") is True


def _stream_fault(request: web.Request) -> str | None:
    fault = REQUEST_FAULT.get()
    if fault is None or fault.kind not in _STREAM_CUTS:
        return None
    route = request.match_info.route.name or ""
    request.app[DEPS].faults.record(route, fault.kind)
    return fault.kind


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


def _encode(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _ends_stream(event: str) -> bool:
    status = event.removeprefix("thread.run.")
    return event.startswith("thread.run.") and (
        status == "requires_action" or status in TERMINAL_STATUSES
    )


async def stream_run(
    request: web.Request, apply: Callable[[], tuple[str, Sequence[Event]]]
) -> web.StreamResponse:
    """Apply the request (`apply` returns the run id and its first events), then stream the run.

    A request that `apply` refuses is answered with the usual JSON error, before any event.
    """
    kind = _stream_fault(request)
    if kind == "cut_before_apply":
        _cut(request)
        return web.Response(status=500)
    state = request.app[DEPS].state
    run_id, first = apply()
    sink = state.watch(run_id)
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
        try:
            await _send(request, response, run_id, list(first), sink,
                        cut_mid=kind == "cut_mid_stream")
        except RequestRefused as exc:  # the thread was deleted under the stream, say
            await response.write(_encode("error", exc.body()["error"]))
        return response
    except ConnectionResetError:
        return web.Response(status=500)  # the client left; nothing to answer
    finally:
        state.unwatch(run_id, sink)


async def _send(
    request: web.Request,
    response: web.StreamResponse,
    run_id: str,
    pending: list[Event],
    sink: list[Event],
    *,
    cut_mid: bool,
) -> None:
    state = request.app[DEPS].state
    while True:
        for event, data in pending:
            await response.write(_encode(event, data))
            if cut_mid:
                _cut(request)
                return
            if _ends_stream(event):
                await response.write(_DONE)
                await response.write_eof()
                return
        pending = []
        run = state.run_record(run_id)  # applies what time has done, into `sink`
        pending = list(sink)
        sink.clear()
        if not pending:
            change_at = state.next_change_at(run)
            wait_s = _MAX_NAP_S if change_at is None else change_at - state.clock()
            await asyncio.sleep(min(max(wait_s, 0.001), _MAX_NAP_S))

"""HTTP handlers of the run endpoints; run creation and submissions may stream."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from worker.simulator.replies import ok, page, read_json, state_of
from worker.simulator.streaming import stream_run, wants_stream
from worker.simulator.thread_routes import message_params, thread_params
from worker.simulator.wire import (
    RequestRefused,
    check_fields,
    check_kinds,
    check_metadata,
    invalid_type,
    parse_sim_rounds,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aiohttp import web

    from worker.simulator.store import Event

__all__ = [
    "RUN_ROUTES",
    "cancel_run",
    "create_run",
    "create_thread_and_run",
    "list_runs",
    "modify_run",
    "retrieve_run",
    "submit_tool_outputs",
]

_RUN_OPTIONS = frozenset({
    "model", "instructions", "tools", "metadata", "temperature", "top_p", "stream",
    "max_prompt_tokens", "max_completion_tokens", "truncation_strategy", "tool_choice",
    "parallel_tool_calls", "response_format",
})
_RUN_FIELDS = _RUN_OPTIONS | {
    "assistant_id", "reasoning_effort", "additional_instructions", "additional_messages",
}
_THREAD_AND_RUN_FIELDS = _RUN_OPTIONS | {"assistant_id", "thread", "tool_resources"}
_RUN_KINDS = {
    "model": "string", "instructions": "string", "additional_instructions": "string",
    "reasoning_effort": "string", "tools": "tools", "temperature": "number", "top_p": "number",
    "stream": "boolean", "max_prompt_tokens": "number", "max_completion_tokens": "number",
    "truncation_strategy": "object", "parallel_tool_calls": "boolean",
    "tool_resources": "object",
}


def _run_params(body: object, allowed: frozenset[str]) -> dict[str, Any]:
    fields = check_fields(body, allowed, ["assistant_id"])
    if not isinstance(fields["assistant_id"], str):
        raise invalid_type("assistant_id", "a string", fields["assistant_id"])
    check_kinds(fields, _RUN_KINDS)
    check_metadata(fields.get("metadata"))
    additional = fields.get("additional_messages") or []
    if not isinstance(additional, list):
        raise invalid_type("additional_messages", "an array", additional)
    fields["additional_messages"] = [
        message_params(m, f"additional_messages[{i}].") for i, m in enumerate(additional)
    ]
    return fields


def _ids(request: web.Request) -> tuple[str, str]:
    return request.match_info["thread_id"], request.match_info["run_id"]


def _started(run: dict[str, Any], *before: Event) -> tuple[str, Sequence[Event]]:
    return run["id"], (*before, ("thread.run.created", run), ("thread.run.queued", run))


# Each handler is named after its endpoint, which names its route, counter and fault rule.


async def create_run(request: web.Request) -> web.StreamResponse:
    body = _run_params(await read_json(request), _RUN_FIELDS)
    state, thread_id = state_of(request), request.match_info["thread_id"]
    if wants_stream(body):
        return await stream_run(request, lambda: _started(state.create_run(thread_id, body)))
    return ok(state.create_run(thread_id, body), request)


async def list_runs(request: web.Request) -> web.Response:
    return ok(state_of(request).list_runs(request.match_info["thread_id"], **page(request)))


async def retrieve_run(request: web.Request) -> web.Response:
    return ok(state_of(request).retrieve_run(*_ids(request)), request)


async def modify_run(request: web.Request) -> web.Response:
    body = check_fields(await read_json(request), {"metadata"})
    check_metadata(body.get("metadata"))
    return ok(state_of(request).modify_run(*_ids(request), body), request)


async def cancel_run(request: web.Request) -> web.Response:
    return ok(state_of(request).cancel_run(*_ids(request)), request)


async def submit_tool_outputs(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    thread_id, run_id = _ids(request)
    try:
        body = await read_json(request)
    except RequestRefused as exc:
        state.record_submission(thread_id, run_id, None, None, exc)
        raise
    if wants_stream(body):

        def apply() -> tuple[str, Sequence[Event]]:
            answered = copy.deepcopy(state.retrieve_run(thread_id, run_id))
            run = state.submit_tool_outputs(thread_id, run_id, body)
            if "stream_replays_round" in state.quirks:  # the round just answered, once more
                return run_id, [("thread.run.requires_action", answered)]
            return run_id, [("thread.run.queued", run)]

        return await stream_run(request, apply)
    return ok(state.submit_tool_outputs(thread_id, run_id, body), request)


async def create_thread_and_run(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = _run_params(await read_json(request), _THREAD_AND_RUN_FIELDS)
    thread_body = thread_params(body.pop("thread", None) or {}, "thread.")
    # Check everything create_run would refuse before the thread exists.
    state.retrieve_assistant(body["assistant_id"])
    parse_sim_rounds((body.get("metadata") or {}).get("sim_rounds"))

    def apply() -> tuple[str, Sequence[Event]]:
        thread = state.create_thread(thread_body["messages"], thread_body.get("metadata"))
        return _started(state.create_run(thread["id"], body), ("thread.created", thread))

    if wants_stream(body):
        return await stream_run(request, apply)
    _, events = apply()
    return ok(events[-1][1], request)


RUN_ROUTES = (
    # Registered before /threads/{thread_id} so that "runs" is never taken for a thread id.
    ("POST", "/threads/runs", create_thread_and_run),
    ("POST", "/threads/{thread_id}/runs", create_run),
    ("GET", "/threads/{thread_id}/runs", list_runs),
    ("GET", "/threads/{thread_id}/runs/{run_id}", retrieve_run),
    ("POST", "/threads/{thread_id}/runs/{run_id}", modify_run),
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel", cancel_run),
    ("POST", "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", submit_tool_outputs),
)

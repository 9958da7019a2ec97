"""HTTP handlers of the assistant endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.simulator.replies import ok, page, read_json, state_of
from worker.simulator.wire import check_fields, check_kinds, check_metadata

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "ASSISTANT_ROUTES",
    "create_assistant",
    "delete_assistant",
    "list_assistants",
    "modify_assistant",
    "retrieve_assistant",
]

_ASSISTANT_FIELDS = frozenset({
    "model", "name", "description", "instructions", "reasoning_effort", "tools",
    "tool_resources", "metadata", "temperature", "top_p", "response_format",
})
_ASSISTANT_KINDS = {
    "model": "string", "name": "string", "description": "string", "instructions": "string",
    "reasoning_effort": "string", "tools": "tools", "tool_resources": "object",
    "temperature": "number", "top_p": "number",
}


def _assistant_params(body: object, required: tuple[str, ...] = ()) -> dict[str, Any]:
    fields = check_fields(body, _ASSISTANT_FIELDS, required)
    check_kinds(fields, _ASSISTANT_KINDS)
    check_metadata(fields.get("metadata"))
    return fields


# Each handler is named after its endpoint, which names its route, counter and fault rule.


async def create_assistant(request: web.Request) -> web.Response:
    body = _assistant_params(await read_json(request), ("model",))
    return ok(state_of(request).create_assistant(body))


async def list_assistants(request: web.Request) -> web.Response:
    return ok(state_of(request).list_assistants(**page(request)))


async def retrieve_assistant(request: web.Request) -> web.Response:
    return ok(state_of(request).retrieve_assistant(request.match_info["assistant_id"]))


async def modify_assistant(request: web.Request) -> web.Response:
    body = _assistant_params(await read_json(request))
    return ok(state_of(request).modify_assistant(request.match_info["assistant_id"], body))


async def delete_assistant(request: web.Request) -> web.Response:
    return ok(state_of(request).delete_assistant(request.match_info["assistant_id"]))


ASSISTANT_ROUTES = (
    ("POST", "/assistants", create_assistant),
    ("GET", "/assistants", list_assistants),
    ("GET", "/assistants/{assistant_id}", retrieve_assistant),
    ("POST", "/assistants/{assistant_id}", modify_assistant),
    ("DELETE", "/assistants/{assistant_id}", delete_assistant),
)

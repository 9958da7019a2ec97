"""HTTP handlers of the thread and message endpoints, and the checks of their bodies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.simulator.replies import ok, page, read_json, state_of
from worker.simulator.wire import (
    check_content,
    check_fields,
    check_kinds,
    check_metadata,
    invalid_type,
    refuse,
)

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "AZURE_THREAD_ROUTES",
    "THREAD_ROUTES",
    "create_message",
    "create_thread",
    "delete_thread",
    "list_messages",
    "list_threads",
    "message_params",
    "modify_thread",
    "retrieve_thread",
    "thread_params",
]

_MESSAGE_FIELDS = frozenset({"role", "content", "attachments", "metadata"})
_THREAD_FIELDS = frozenset({"messages", "tool_resources", "metadata"})


def message_params(body: object, where: str = "") -> dict[str, Any]:
    """A CreateMessageRequest's fields, or the API's 400."""
    fields = check_fields(body, _MESSAGE_FIELDS, ["role", "content"], where=where)
    if fields["role"] not in ("user", "assistant"):
        raise refuse(f"Invalid value: '{fields['role']}'. Supported values are: 'user' and "
                     "'assistant'.", param=f"{where}role", code="invalid_value")
    check_content(fields["content"], f"{where}content")
    attachments = fields.get("attachments")
    if attachments is not None and not isinstance(attachments, list):
        raise invalid_type(f"{where}attachments", "an array", attachments)
    check_metadata(fields.get("metadata"), f"{where}metadata")
    return fields


def thread_params(body: object, where: str = "") -> dict[str, Any]:
    """A CreateThreadRequest's fields, its messages checked, or the API's 400."""
    fields = check_fields(body, _THREAD_FIELDS, where=where)
    messages = fields.get("messages") or []
    if not isinstance(messages, list):
        raise invalid_type(f"{where}messages", "an array", messages)
    fields["messages"] = [message_params(m, f"{where}messages[{i}].")
                          for i, m in enumerate(messages)]
    check_kinds(fields, {"tool_resources": "object"})
    check_metadata(fields.get("metadata"), f"{where}metadata")
    return fields


# Each handler is named after its endpoint, which names its route, counter and fault rule.


async def create_thread(request: web.Request) -> web.Response:
    body = thread_params(await read_json(request))
    return ok(state_of(request).create_thread(body["messages"], body.get("metadata")))


async def retrieve_thread(request: web.Request) -> web.Response:
    state = state_of(request)
    thread = state.retrieve_thread(request.match_info["thread_id"])
    if "metadata_underscore" in state.quirks:
        thread = {("metadata_" if k == "metadata" else k): v for k, v in thread.items()}
    return ok(thread)


async def modify_thread(request: web.Request) -> web.Response:
    body = check_fields(await read_json(request), {"tool_resources", "metadata"})
    check_kinds(body, {"tool_resources": "object"})
    check_metadata(body.get("metadata"))
    return ok(state_of(request).modify_thread(request.match_info["thread_id"], body))


async def delete_thread(request: web.Request) -> web.Response:
    return ok(state_of(request).delete_thread(request.match_info["thread_id"]))


async def list_threads(request: web.Request) -> web.Response:
    return ok(state_of(request).list_threads(**page(request)))


async def create_message(request: web.Request) -> web.Response:
    body = message_params(await read_json(request))
    return ok(state_of(request).create_message(request.match_info["thread_id"], body))


async def list_messages(request: web.Request) -> web.Response:
    thread_id = request.match_info["thread_id"]
    run_id = request.query.get("run_id")
    return ok(state_of(request).list_messages(thread_id, run_id, **page(request)))


THREAD_ROUTES = (
    ("POST", "/threads", create_thread),
    ("GET", "/threads/{thread_id}", retrieve_thread),
    ("POST", "/threads/{thread_id}", modify_thread),
    ("DELETE", "/threads/{thread_id}", delete_thread),
    ("POST", "/threads/{thread_id}/messages", create_message),
    ("GET", "/threads/{thread_id}/messages", list_messages),
)
# Agent Service extras: it lists threads, which the OpenAI API never did.
AZURE_THREAD_ROUTES = (("GET", "/threads", list_threads),)

"""HTTP handlers of the simulated Agents API (`OpenAI-Beta: agents=v1`), on the openai profile.

Handler names are the endpoint names of request counts and fault plans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from worker.simulator.agents_inputs import check_agent, check_vault_ids, spend_limit
from worker.simulator.agents_stream import agents_of, stream_session
from worker.simulator.replies import ok, page, read_json
from worker.simulator.wire import (
    RequestRefused,
    check_fields,
    check_metadata,
    not_found,
    paginate,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from worker.simulator.agents_lifecycle import EventSink
    from worker.simulator.agents_records import SessionRecord

__all__ = ["AGENT_ENDPOINTS", "AGENT_ROUTES"]


async def create_agent(request: web.Request) -> web.Response:
    """POST /agents."""
    fields = check_agent(await read_json(request))
    return ok(agents_of(request).create_agent(fields).render())


async def list_agents(request: web.Request) -> web.Response:
    """GET /agents."""
    return ok(agents_of(request).list_agents(**page(request)))


async def retrieve_agent(request: web.Request) -> web.Response:
    """GET /agents/{agent_id}."""
    return ok(agents_of(request).agent(request.match_info["agent_id"]).render())


async def delete_agent(request: web.Request) -> web.Response:
    """DELETE /agents/{agent_id}."""
    return ok(agents_of(request).delete_agent(request.match_info["agent_id"]))


async def create_session(request: web.Request) -> web.StreamResponse:
    """POST /agents/sessions; with `"stream": true`, the session's events until it is idle."""
    body = await read_json(request)
    state = agents_of(request)
    if isinstance(body, dict) and body.get("stream") is True:
        options = body.get("stream_options")
        obfuscate = not (isinstance(options, dict) and options.get("include_obfuscation") is False)

        def open_session(sink: EventSink) -> SessionRecord:
            return state.create_session(body, sink=sink)

        return await stream_session(request, open_session, obfuscate=obfuscate, until_idle=True)
    return ok(state.create_session(body if isinstance(body, dict) else {"body": body}).render())


async def list_sessions(request: web.Request) -> web.Response:
    """GET /agents/sessions: `agent_id`, `metadata[key]=value`, and the page parameters."""
    metadata = {
        name[len("metadata["):-1]: value
        for name, value in request.query.items()
        if name.startswith("metadata[") and name.endswith("]")
    }
    return ok(agents_of(request).list_sessions(
        agent_id=request.query.get("agent_id"), metadata=metadata, **page(request)))


async def retrieve_session(request: web.Request) -> web.Response:
    """GET /agents/sessions/{session_id}."""
    return ok(agents_of(request).session(request.match_info["session_id"]).render())


async def update_session(request: web.Request) -> web.Response:
    """POST /agents/sessions/{session_id}: `metadata`, `spend_control` and `vault_ids` change."""
    body = await read_json(request)
    state = agents_of(request)
    session = state.session(request.match_info["session_id"])
    fields = check_fields(body, {"metadata", "agent", "prompt_cache_options", "review",
                                 "spend_control", "vault_ids"})
    if fields.get("metadata") is not None:
        session.metadata = check_metadata(fields["metadata"])
    if "vault_ids" in fields:
        session.extra["vault_ids"] = check_vault_ids(fields["vault_ids"])
    if "spend_control" in fields:
        state.set_spend_limit(session, spend_limit(fields["spend_control"]))
    return ok(session.render())


async def delete_session(request: web.Request) -> web.Response:
    """DELETE /agents/sessions/{session_id}."""
    return ok(agents_of(request).delete_session(request.match_info["session_id"]))


async def list_turns(request: web.Request) -> web.Response:
    """GET /agents/sessions/{session_id}/turns: the session's turns, newest first by default."""
    session = agents_of(request).session(request.match_info["session_id"])
    return ok(paginate([turn.render() for turn in session.turns], **page(request)))


async def retrieve_turn(request: web.Request) -> web.Response:
    """GET /agents/sessions/{session_id}/turns/{turn_id}."""
    session = agents_of(request).session(request.match_info["session_id"])
    turn = session.turn_by_id(request.match_info["turn_id"])
    if turn is None:
        raise not_found("turn", request.match_info["turn_id"])
    return ok(turn.render())


async def create_session_events(request: web.Request) -> web.Response:
    """POST /agents/sessions/{session_id}/events: 202 once accepted, with an empty body."""
    body = await read_json(request)
    key = request.headers.get("Idempotency-Key")
    replayed = agents_of(request).post_events(request.match_info["session_id"], body, key)
    response = web.Response(status=202)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def stream_session_events(request: web.Request) -> web.StreamResponse:
    """GET /agents/sessions/{session_id}/events: the session's live events."""
    state = agents_of(request)
    session_id = request.match_info["session_id"]
    flag = request.query.get("include_obfuscation", "true")
    if flag not in ("true", "false"):
        raise RequestRefused(400, "Invalid value for 'include_obfuscation': expected 'true' or "
                             "'false'.", param="include_obfuscation", code="invalid_value")

    def open_session(sink: EventSink) -> SessionRecord:
        # Watch first, then apply what time has made: a transition due by now (the first
        # requires_action of a session just created, say) reaches this stream.
        state.session(session_id, advance=False)  # the 404 of an unknown one, before watching
        state.watch(session_id, sink)
        return state.session(session_id)

    return await stream_session(request, open_session, obfuscate=flag == "true")


AGENT_ROUTES: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]], ...]
AGENT_ROUTES = (
    # /agents/sessions before /agents/{agent_id}, so that "sessions" is never taken for an id.
    ("POST", "/agents/sessions", create_session),
    ("GET", "/agents/sessions", list_sessions),
    ("GET", "/agents/sessions/{session_id}", retrieve_session),
    ("POST", "/agents/sessions/{session_id}", update_session),
    ("DELETE", "/agents/sessions/{session_id}", delete_session),
    ("POST", "/agents/sessions/{session_id}/events", create_session_events),
    ("GET", "/agents/sessions/{session_id}/events", stream_session_events),
    ("GET", "/agents/sessions/{session_id}/turns", list_turns),
    ("GET", "/agents/sessions/{session_id}/turns/{turn_id}", retrieve_turn),
    ("POST", "/agents", create_agent),
    ("GET", "/agents", list_agents),
    ("GET", "/agents/{agent_id}", retrieve_agent),
    ("DELETE", "/agents/{agent_id}", delete_agent),
)
AGENT_ENDPOINTS = tuple(handler.__name__ for _, _, handler in AGENT_ROUTES)

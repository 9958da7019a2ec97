"""The Agents API adapter against tiny aiohttp apps: sessions read as runs, a turn's results in
one idempotent events request, live events, and discovery that stops at known sessions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import ServedApp
from worker.api.agents import SessionsClient, idempotency_key, input_events
from worker.api.backends import build_profile
from worker.api.retry import RetryPolicy
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import ApiStatusError, BadAnswer, RunNotActionable
from worker.models import CallOutcome, RunStatus, ToolApproval, ToolOutput
from worker.observability.metrics import Metrics

KEY = "sk-test-abcdefghijklmnop"
SESSION = "sess_1"


def session_json(status: str = "requires_action", actions: list[Any] | None = None,
                 **extra: Any) -> dict[str, Any]:
    if actions is None:
        actions = [call("call_1", {"a": 1}), call("call_2", '{"b": 2}')]
    return {"id": SESSION, "object": "agent.session", "status": status,
            "agent": {"id": "agent_1", "model": "gpt-x", "tools": []},
            "required_actions": actions if status == "requires_action" else [],
            "metadata": {"user": "u1"}, "created_at": 1_700_000_000, **extra}


def call(call_id: str, arguments: object, turn_id: str = "turn_1") -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "turn_id": turn_id, "name": "add",
            "arguments": arguments}


def make_client(url: str, *, agents: tuple[str, ...] = (), retries: int = 2) -> SessionsClient:
    settings = ApiSettings(backend="agents", base_url=f"{url}/v1", max_retries=retries,
                           request_timeout_s=5.0)
    return SessionsClient(build_profile(settings, Secret(KEY)), settings, Metrics(),
                          agents=agents, retry=RetryPolicy(retries, base_s=0.001))


def served(*routes: tuple[str, str, Any]) -> ServedApp:
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return ServedApp(app)


def output(call_id: str, text: str, outcome: CallOutcome = CallOutcome.OK) -> ToolOutput:
    return ToolOutput(call_id, text, "add", outcome, 0.01)


async def test_a_waiting_session_is_a_run_of_its_turn_with_the_agents_beta_header() -> None:
    """Bearer key and OpenAI-Beta: agents=v1; the turn's function calls are the round's calls,
    with object arguments as JSON text and string arguments taken as they are."""
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response(session_json())

    async with served(("GET", "/v1/agents/sessions/sess_1", handler)) as server, \
            make_client(server.url) as client:
        run = await client.retrieve_run(SESSION, SESSION)
    assert seen[0]["Authorization"] == f"Bearer {KEY}"
    assert seen[0]["OpenAI-Beta"] == "agents=v1"
    assert (run.id, run.thread_id, run.assistant_id) == ("turn_1", SESSION, "agent_1")
    assert run.wants_tool_outputs
    assert [(c.id, json.loads(c.arguments)) for c in run.tool_calls] == [
        ("call_1", {"a": 1}), ("call_2", {"b": 2})]
    assert dict(run.metadata) == {"user": "u1"}


async def test_only_the_first_turns_calls_make_the_round() -> None:
    """Actions of two turns (a subagent's, say): one round per turn, the first turn first."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(session_json(actions=[
            call("call_1", {}), call("call_9", {}, turn_id="turn_2"), call("call_2", {})]))

    async with served(("GET", "/v1/agents/sessions/sess_1", handler)) as server, \
            make_client(server.url) as client:
        [run] = await client.list_runs(SESSION)
    assert run.id == "turn_1"
    assert run.call_ids == {"call_1", "call_2"}


@pytest.mark.parametrize(("status", "expected"), [
    ("idle", RunStatus.COMPLETED), ("in_progress", RunStatus.IN_PROGRESS),
    ("failed", RunStatus.FAILED), ("budget_reached", RunStatus.UNKNOWN),
    ("something_new", RunStatus.UNKNOWN)])
async def test_session_statuses_read_as_run_statuses(status: str, expected: RunStatus) -> None:
    """An idle session is a thread whose run ended; in_progress goes on; unknown is watched."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(session_json(status))

    async with served(("GET", "/v1/agents/sessions/sess_1", handler)) as server, \
            make_client(server.url) as client:
        [run] = await client.list_runs(SESSION)
    assert run.status is expected
    assert not run.wants_tool_outputs


async def test_another_session_in_the_answer_is_a_bad_answer() -> None:
    """A gateway that mixes up answers must not make the worker answer another session."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({**session_json(), "id": "sess_other"})

    async with served(("GET", "/v1/agents/sessions/sess_1", handler)) as server, \
            make_client(server.url) as client:
        with pytest.raises(BadAnswer, match="sess_other"):
            await client.retrieve_run(SESSION, SESSION)


async def test_other_actions_are_named_and_mcp_requests_become_approval_calls() -> None:
    """MCP approval requests are an approval round; other kinds keep their type (left alone)."""
    mcp = {"type": "mcp_approval_request", "request_id": "mcpr_1", "turn_id": "turn_1",
           "request": {"type": "mcp_tool_call", "server_label": "docs", "name": "search",
                       "arguments": {"q": "x"}, "message": "ok?"}}
    env = {"type": "environment_connection", "environment_id": "env_1"}
    answers = [session_json(actions=[mcp]), session_json(actions=[env])]

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(answers.pop(0))

    async with served(("GET", "/v1/agents/sessions/sess_1", handler)) as server, \
            make_client(server.url) as client:
        [approval] = await client.list_runs(SESSION)
        [other] = await client.list_runs(SESSION)
    assert approval.wants_approvals
    assert [(c.id, c.server_label, c.name) for c in approval.approval_calls] == [
        ("mcpr_1", "docs", "search")]
    assert other.required_action_type == "environment_connection"
    assert not other.wants_tool_outputs
    assert not other.wants_approvals


def test_the_idempotency_key_names_the_session_the_turn_and_the_calls_in_any_order() -> None:
    """The same answer gets the same key however its calls are ordered; any other gets another."""
    key = idempotency_key("sess_1", "turn_1", ["call_2", "call_1"])
    assert key == idempotency_key("sess_1", "turn_1", ["call_1", "call_2"])
    assert key.startswith("tw-")
    assert len(key) < 80
    others = {idempotency_key("sess_2", "turn_1", ["call_1", "call_2"]),
              idempotency_key("sess_1", "turn_2", ["call_1", "call_2"]),
              idempotency_key("sess_1", "turn_1", ["call_1"])}
    assert key not in others
    assert len(others) == 3


def test_results_map_to_tool_result_events() -> None:
    """Success carries the output; an exception, a timeout or bad arguments carry the same text
    the model gets today as ``error`` with ``success: false``."""
    events = input_events("turn_1", [
        output("call_1", "3"),
        output("call_2", "Error: add failed: boom", CallOutcome.ERROR),
        output("call_3", "Error: add timed out after 1 s", CallOutcome.TIMEOUT),
        output("call_4", "Error: bad arguments", CallOutcome.INVALID_ARGUMENTS)])
    base = {"type": "agent.session.input.tool_result", "turn_id": "turn_1"}
    assert events == [
        {**base, "call_id": "call_1", "success": True, "output": "3"},
        {**base, "call_id": "call_2", "success": False, "error": "Error: add failed: boom"},
        {**base, "call_id": "call_3", "success": False,
         "error": "Error: add timed out after 1 s"},
        {**base, "call_id": "call_4", "success": False, "error": "Error: bad arguments"}]


def test_approvals_map_to_mcp_approval_results() -> None:
    """An approval round answers each request with approve or deny."""
    events = input_events("turn_1", [], [ToolApproval("mcpr_1", True),
                                         ToolApproval("mcpr_2", False)])
    assert [(e["type"], e["request_id"], e["response"]) for e in events] == [
        ("agent.session.input.mcp_approval_request_result", "mcpr_1",
         {"type": "mcp_tool_call", "decision": "approve"}),
        ("agent.session.input.mcp_approval_request_result", "mcpr_2",
         {"type": "mcp_tool_call", "decision": "deny"})]


async def test_a_turn_is_answered_in_one_request_whose_retry_carries_the_same_key() -> None:
    """All results in one POST; a 503 is retried with the same Idempotency-Key; 202 with no
    body is accepted."""
    seen: list[tuple[str | None, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Idempotency-Key"), await request.json()))
        if len(seen) == 1:
            return web.json_response({"error": {"message": "busy"}}, status=503)
        return web.Response(status=202)

    async with served(("POST", "/v1/agents/sessions/sess_1/events", handler)) as server, \
            make_client(server.url) as client:
        run = await client.submit_tool_outputs(
            SESSION, "turn_1", [output("call_1", "3"), output("call_2", "4")])
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert seen[0][0] == idempotency_key(SESSION, "turn_1", ["call_1", "call_2"])
    assert [e["call_id"] for e in seen[0][1]["events"]] == ["call_1", "call_2"]
    assert run.status is RunStatus.IN_PROGRESS


@pytest.mark.parametrize("answer", [
    web.Response(status=200, text="OK"), web.json_response([1, 2], status=200),
    web.Response(status=202, body=b"\xff\xfe"), web.Response(status=204),
    web.json_response({"object": "list", "data": []}, status=200),
], ids=["text", "list", "bytes", "204", "object"])
async def test_any_2xx_to_the_events_request_is_accepted_whatever_its_body(
    answer: web.Response,
) -> None:
    """2xx means accepted; a server's body there is not ours to parse (no bad_answer, no resend)."""
    posts = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal posts
        posts += 1
        return answer

    async with served(("POST", "/v1/agents/sessions/sess_1/events", handler)) as server, \
            make_client(server.url) as client:
        run = await client.submit_tool_outputs(SESSION, "turn_1", [output("call_1", "3")])
    assert run.status is RunStatus.IN_PROGRESS
    assert posts == 1


async def test_a_400_for_a_call_no_longer_pending_is_not_actionable() -> None:
    """The submitter reads such a refusal back and classifies it, as for runs."""

    async def handler(request: web.Request) -> web.Response:
        error = {"message": "Call call_1 is not pending", "code": "invalid_request_error"}
        return web.json_response({"error": error}, status=400)

    async with served(("POST", "/v1/agents/sessions/sess_1/events", handler)) as server, \
            make_client(server.url) as client:
        with pytest.raises(RunNotActionable):
            await client.submit_tool_outputs(SESSION, "turn_1", [output("call_1", "3")])


async def test_a_call_not_registered_yet_is_sent_again_with_the_same_key() -> None:
    """"Unknown pending tool call" twice, then 202: the SDK's retry, one key throughout."""
    keys: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        if len(keys) < 3:
            error = {"message": "Unknown pending tool call: call_1",
                     "code": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        return web.Response(status=202)

    async with served(("POST", "/v1/agents/sessions/sess_1/events", handler)) as server, \
            make_client(server.url) as client:
        await client.submit_tool_outputs(SESSION, "turn_1", [output("call_1", "3")])
    assert len(keys) == 3
    assert len(set(keys)) == 1


async def test_a_call_unknown_for_longer_is_a_passing_failure_not_a_refusal() -> None:
    """Still unknown after the SDK's retries: the submitter tries again later (same key); a
    refusal would settle the round and the session would wait for ever."""
    keys: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        error = {"message": "Unknown pending tool call: call_1", "code": "invalid_request_error"}
        return web.json_response({"error": error}, status=400)

    async with served(("POST", "/v1/agents/sessions/sess_1/events", handler)) as server, \
            make_client(server.url) as client:
        with pytest.raises(ApiStatusError) as caught:
            await client.submit_tool_outputs(SESSION, "turn_1", [output("call_1", "3")])
    assert not isinstance(caught.value, RunNotActionable)
    assert len(keys) == 4
    assert len(set(keys)) == 1


@pytest.mark.parametrize(("turn", "expected"), [
    ({"id": "turn_1", "status": "requires_action"}, RunStatus.UNKNOWN),  # one read lags
    ({"id": "turn_1", "status": "in_progress"}, RunStatus.UNKNOWN),
    ({"id": "turn_1", "status": "no-such-status"}, RunStatus.COMPLETED),
    ({"id": "turn_1", "status": "cancelled"}, RunStatus.CANCELLED),
    ({"id": "turn_1", "status": "failed"}, RunStatus.FAILED),
    (None, RunStatus.COMPLETED)])
async def test_a_turn_that_no_longer_waits_reads_as_its_own_end(
    turn: dict[str, Any] | None, expected: RunStatus,
) -> None:
    """Idle session, turn asked about: the turn says cancelled or failed; no turn: completed."""

    async def session(request: web.Request) -> web.Response:
        return web.json_response(session_json("idle"))

    async def turn_handler(request: web.Request) -> web.Response:
        if turn is None:
            return web.json_response({"error": {"message": "no such turn"}}, status=404)
        return web.json_response(turn)

    async with served(("GET", "/v1/agents/sessions/sess_1", session),
                      ("GET", "/v1/agents/sessions/sess_1/turns/turn_1", turn_handler)) as server, \
            make_client(server.url) as client:
        run = await client.retrieve_run(SESSION, "turn_1")
    assert (run.id, run.status) == ("turn_1", expected)


async def test_live_events_yield_the_session_of_each_status_event() -> None:
    """Deltas and items are skipped, and so are events whose type is not a string (an object
    or a list there once raised TypeError); requires_action, in_progress and idle come as runs."""
    frames = [
        {"type": {"name": "agent.session.idle"}, "event_id": "e0"},
        {"type": ["agent.session.idle"], "event_id": "e0b", "session": session_json("idle")},
        {"type": "agent.session.in_progress", "event_id": "e1", "session": session_json(
            "in_progress")},
        {"type": "agent.session.turn.output_text.delta", "event_id": "e2", "delta": "hi"},
        {"type": "agent.session.requires_action", "event_id": "e3", "session": session_json()},
        {"type": "agent.session.idle", "event_id": "e4", "session": session_json("idle")},
    ]

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.headers["Accept"] == "text/event-stream"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": keepalive\n\n")
        for frame in frames:
            await response.write(f"event: {frame['type']}\ndata: {json.dumps(frame)}\n\n".encode())
        await response.write_eof()
        return response

    async with served(("GET", "/v1/agents/sessions/sess_1/events", handler)) as server, \
            make_client(server.url) as client, client.live_events(SESSION) as runs:
        seen = [run async for run in runs]
    assert [run.status for run in seen] == [
        RunStatus.IN_PROGRESS, RunStatus.REQUIRES_ACTION, RunStatus.COMPLETED]
    assert seen[1].call_ids == {"call_1", "call_2"}


async def test_discovery_lists_each_agent_newest_first_and_stops_at_known_sessions() -> None:
    """Pages of agent_a until one holds a known session, then agent_b's; no page past that."""
    pages = {("agent_a", None): (["sess_9", "sess_8"], True),
             ("agent_a", "sess_8"): (["sess_7", "sess_6"], True),
             ("agent_b", None): (["sess_5"], False)}
    asked: list[tuple[str, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        key = (request.query["agent_id"], request.query.get("after"))
        asked.append(key)
        assert request.query["order"] == "desc"
        ids, more = pages[key]
        return web.json_response({"data": [{"id": i} for i in ids], "has_more": more})

    known = {"sess_6"}
    listed: list[str] = []
    async with served(("GET", "/v1/agents/sessions", handler)) as server, \
            make_client(server.url, agents=("agent_a", "agent_b")) as client:
        after: str | None = None
        while True:
            page, after = await client.list_threads(after=after, known=known.__contains__)
            listed += page
            if after is None:
                break
    assert asked == [("agent_a", None), ("agent_a", "sess_8"), ("agent_b", None)]
    assert listed == ["sess_9", "sess_8", "sess_7", "sess_6", "sess_5"]


async def test_discovery_reads_on_past_known_sessions_when_the_server_lists_oldest_first() -> None:
    """A server that ignores order=desc lists its new sessions last: a page holding a known
    session does not stop the listing when it is oldest first (created_at going up)."""
    sessions = [{"id": f"sess_{n}", "created_at": 1_700_000_000 + n} for n in range(1, 6)]

    async def handler(request: web.Request) -> web.Response:
        ids = [s["id"] for s in sessions]
        start = ids.index(request.query["after"]) + 1 if "after" in request.query else 0
        return web.json_response({"data": sessions[start:start + 2],
                                  "has_more": start + 2 < len(sessions)})

    listed: list[str] = []
    async with served(("GET", "/v1/agents/sessions", handler)) as server, \
            make_client(server.url, agents=("agent_a",)) as client:
        after: str | None = None
        while True:
            page, after = await client.list_threads(after=after, known={"sess_1"}.__contains__)
            listed += page
            if after is None:
                break
    assert listed == ["sess_1", "sess_2", "sess_3", "sess_4", "sess_5"]

"""The Agents API's JSON matches the SDK's types field for field (none missing, none extra)."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
from openai.types.beta import Agent, AgentSession, AgentSessionEvent
from openai.types.beta.agents.sessions import Turn

from tests.conftest import wait_for
from tests.simulator.agents_helpers import AGENTS_HEADERS, raw_events, strict

if TYPE_CHECKING:
    from worker.simulator import Simulator

ECHO = {"type": "function", "name": "echo", "parameters": {"type": "object"}}
TURNS = [[{"name": "echo", "arguments": {"text": "a"}}, {"name": "echo", "arguments": {}}],
         {"calls": [{"name": "deploy", "server_label": "ops"}], "fail": "crashed"}]


async def _json(http: aiohttp.ClientSession, method: str, url: str,
                body: object = None) -> Any:
    async with http.request(method, url, json=body, headers=AGENTS_HEADERS) as reply:
        assert reply.status == 200, await reply.text()
        return await reply.json()


async def test_agents_sessions_and_pages_match_the_sdk_types(sim: Simulator) -> None:
    base = sim.base_url
    async with aiohttp.ClientSession() as http:
        agent = await _json(http, "POST", f"{base}/agents", {
            "model": "gpt-5", "name": "a", "tools": [ECHO], "metadata": {"k": "v"}})
        strict(Agent, agent)
        for environment in ({"type": "none"}, {"type": "self_hosted"}, {"type": "openai_hosted"}):
            session = await _json(http, "POST", f"{base}/agents/sessions", {
                "agent_id": agent["id"], "environment": environment, "input": "hi",
                "metadata": {"sim_turns": json.dumps(TURNS)}, "review": "auto_review"})
            strict(AgentSession, session)
        inline = await _json(http, "POST", f"{base}/agents/sessions", {
            "agent": {"model": "gpt-5", "tools": [ECHO]}, "environment": {"type": "none"},
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]})
        waiting = strict(AgentSession, await _json(
            http, "GET", f"{base}/agents/sessions/{inline['id']}"))
        assert waiting.status == "requires_action"
        assert waiting.required_actions[0].arguments == {}  # made from the tool's schema
        page = await _json(http, "GET", f"{base}/agents/sessions?limit=2")
        assert set(page) == {"object", "data", "first_id", "last_id", "has_more"}
        for item in page["data"]:
            strict(AgentSession, item)
        strict(Agent, (await _json(http, "GET", f"{base}/agents"))["data"][0])
        turns = await _json(http, "GET", f"{base}/agents/sessions/{inline['id']}/turns")
        assert [strict(Turn, turn).status for turn in turns["data"]] == ["waiting"]


async def test_every_streamed_event_matches_the_sdk_types(sim: Simulator) -> None:
    agent_id = sim.create_agent("a", [ECHO])
    session_id = sim.create_session(agent_id, TURNS, input=None)
    seen: list[dict[str, Any]] = []
    url = f"{sim.base_url}/agents/sessions/{session_id}/events"
    async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
        tg.start_soon(_drive, http, sim, session_id)
        async with contextlib.aclosing(raw_events(http, url)) as events:
            async for event in events:
                strict(AgentSessionEvent, event)
                seen.append(event)
                if event["type"] == "agent.session.failed":
                    break
    kinds = [event["type"] for event in seen]
    assert {"agent.session.requires_action", "agent.session.turn.completed",
            "agent.session.turn.failed", "agent.session.idle"} <= set(kinds)
    assert len({event["event_id"] for event in seen}) == len(seen)
    assert all("obfuscation" in event for event in seen)


async def _drive(http: aiohttp.ClientSession, sim: Simulator, session_id: str) -> None:
    """Start the session once the stream is open, then answer each turn as it waits."""
    await wait_for(lambda: sim.agents.streams_open(session_id), what="the stream")
    url = f"{sim.base_url}/agents/sessions/{session_id}/events"
    await _post(http, url, [{"type": "agent.session.input.message", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "go"}]}]}])
    for _ in range(2):
        await wait_for(lambda: sim.session(session_id)["status"] == "requires_action",
                       what="requires_action")
        await _post(http, url, [_answer(action)
                                for action in sim.session(session_id)["required_actions"]])


def _answer(action: dict[str, Any]) -> dict[str, Any]:
    if action["type"] == "mcp_approval_request":
        return {"type": "agent.session.input.mcp_approval_request_result",
                "request_id": action["request_id"],
                "response": {"type": "mcp_tool_call", "decision": "approve"}}
    return {"type": "agent.session.input.tool_result", "call_id": action["call_id"],
            "turn_id": action["turn_id"], "success": True, "output": "ok"}


async def _post(http: aiohttp.ClientSession, url: str, events: list[Any]) -> None:
    async with http.post(url, json={"events": events}, headers=AGENTS_HEADERS) as reply:
        assert reply.status == 202, await reply.text()
        assert await reply.read() == b""


async def test_error_bodies_have_the_api_shape(sim: Simulator) -> None:
    session_id = sim.create_session(sim.create_agent("a", [ECHO]))
    url = f"{sim.base_url}/agents/sessions/{session_id}/events"
    async with aiohttp.ClientSession() as http, http.post(
        url, json={"events": []}, headers=AGENTS_HEADERS
    ) as reply:
        assert reply.status == 400
        body = await reply.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == "events"

"""The fault plan strikes the Agents API too: lost answers, refused requests, cut streams."""

from __future__ import annotations

import contextlib

import aiohttp
import anyio
import openai

from tests.conftest import wait_for
from tests.simulator.agents_helpers import AGENTS_HEADERS, raw_events
from worker.simulator import FaultPlan, FaultRule, Simulator

ECHO = {"type": "function", "name": "echo"}
TURNS = [[{"name": "echo", "arguments": {"n": n}} for n in range(3)]] * 2


async def test_a_lost_answer_retried_with_its_key_is_applied_once() -> None:
    # Seed 1: the first POST of events is applied, then its connection dropped; the next is not.
    plan = FaultPlan(rules={"create_session_events": FaultRule(p_drop_after=0.6)}, seed=1)
    async with Simulator(faults=plan) as sim, openai.AsyncOpenAI(
        api_key=sim.api_key, base_url=sim.base_url, max_retries=2
    ) as sdk:
        session_id = sim.create_session(sim.create_agent("a", [ECHO]), TURNS)
        waiting = await sdk.beta.agents.sessions.retrieve(session_id)
        events = [{"type": "agent.session.input.tool_result", "call_id": a.call_id,  # type: ignore[union-attr]
                   "turn_id": a.turn_id, "success": True, "output": "ok"}  # type: ignore[union-attr]
                  for a in waiting.required_actions]
        await sdk.beta.agents.sessions.events.create(session_id, events=events,  # type: ignore[arg-type]
                                                     idempotency_key="turn-1")
        assert sim.faults_injected["create_session_events:drop_after"] == 1
        assert [(p.status, p.replayed) for p in sim.events_posts] == [(202, False), (202, True)]
        assert len(sim.tool_results(session_id)) == 3
        assert (await sdk.beta.agents.sessions.retrieve(session_id)).status == "requires_action"


async def test_a_stream_cut_mid_way_ends_after_its_first_event() -> None:
    plan = FaultPlan(rules={"stream_session_events": FaultRule(p_cut_mid_stream=1.0)})
    async with Simulator(faults=plan) as sim, aiohttp.ClientSession() as http:
        session_id = sim.create_session(sim.create_agent("a", [ECHO]), TURNS, input=None)
        url = f"{sim.base_url}/agents/sessions/{session_id}/events"
        seen: list[str] = []

        async def read() -> None:
            with contextlib.suppress(aiohttp.ClientPayloadError):
                async with contextlib.aclosing(raw_events(http, url)) as events:
                    async for event in events:  # the ones before the cut count
                        seen.append(event["type"])  # noqa: PERF401 - kept up to a cut

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await wait_for(lambda: sim.agents.streams_open(session_id), what="the stream")
            message = {"type": "agent.session.input.message", "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "go"}]}]}
            async with http.post(url, json={"events": [message]}, headers=AGENTS_HEADERS) as reply:
                assert reply.status == 202
        assert seen == ["agent.session.in_progress"]
        assert sim.faults_injected["stream_session_events:cut_mid_stream"] == 1
        assert sim.session(session_id)["status"] == "requires_action"  # the work went on

"""The official SDK's `client.beta.agents` drives the simulator's Agents API."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import openai
import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from openai.resources.beta.agents import AsyncAgents
    from openai.types.beta import AgentSession

    from worker.simulator import Simulator

ECHO = {"type": "function", "name": "echo", "description": "Say it back.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                       "required": ["text"]}}
TOOL_RESULT = "agent.session.input.tool_result"


@pytest.fixture
async def agents(sim: Simulator) -> AsyncIterator[AsyncAgents]:
    sdk = openai.AsyncOpenAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0)
    async with sdk:
        yield sdk.beta.agents


def script(turns: int, calls: int) -> str:
    return json.dumps([[{"name": "echo", "arguments": {"text": f"t{t}c{c}"}}
                        for c in range(calls)] for t in range(turns)])


def results(session: AgentSession, *, fail: str | None = None) -> list[Any]:
    """A tool_result for each function call the session waits for; `fail` fails the first."""
    answers: list[Any] = []
    for action in session.required_actions:
        assert action.type == "function_call"
        answer = {"type": TOOL_RESULT, "call_id": action.call_id, "turn_id": action.turn_id,
                  "success": True, "output": json.dumps(action.arguments)}
        if fail is not None and not answers:
            answer = {**answer, "success": False, "error": fail}
            del answer["output"]
        answers.append(answer)
    return answers


async def test_a_session_streams_its_turns_and_takes_each_turns_results(
    sim: Simulator, agents: AsyncAgents
) -> None:
    agent = await agents.create(model="gpt-5", name="demo", tools=[ECHO])  # type: ignore[list-item]
    session = await agents.sessions.create(
        agent_id=agent.id, environment={"type": "none"}, input="go",
        metadata={"sim_turns": script(3, 4), "run": "t1"})
    assert session.agent.id == agent.id
    assert session.metadata["run"] == "t1"
    stream = await agents.sessions.events.stream(session.id)
    turns_seen: list[list[Any]] = []
    kinds: list[str] = []
    async for event in stream:
        kinds.append(event.type)
        if event.type == "agent.session.requires_action":
            waiting = event.session
            assert waiting.status == "requires_action"
            turns_seen.append([(a.name, a.arguments) for a in waiting.required_actions])
            await agents.sessions.events.create(
                session.id, events=results(waiting, fail="boom"),
                idempotency_key=f"{session.id}:{len(turns_seen)}")
        elif event.type == "agent.session.idle" and len(turns_seen) == 3:
            break
    await stream.close()
    assert turns_seen == [[("echo", {"text": f"t{t}c{c}"}) for c in range(4)] for t in range(3)]
    assert kinds.count("agent.session.turn.completed") == 3
    # The stream is live only: the first turn began before it was opened.
    assert kinds.count("agent.session.turn.created") == 2
    done = await agents.sessions.retrieve(session.id)
    assert (done.status, done.required_actions) == ("idle", [])
    assert len(sim.applied_posts(session.id)) == 3
    answers = sim.tool_results(session.id)
    assert len(answers) == 12
    assert len({a["call_id"] for a in answers}) == 12
    assert [a["success"] for a in answers].count(False) == 3


async def test_sessions_list_newest_first_in_cursor_pages(sim: Simulator, agents: AsyncAgents) -> None:
    first, other = sim.create_agent("a", [ECHO]), sim.create_agent("b", [ECHO])
    mine = [sim.create_session(first, [], metadata={"team": "x" if i % 2 else "y"})
            for i in range(5)]
    sim.create_session(other, [])

    listed = [s.id async for s in agents.sessions.list(agent_id=first, limit=2)]
    assert listed == mine[::-1]
    assert sim.request_counts["list_sessions"] == 3
    page = await agents.sessions.list(agent_id=first, limit=2, order="asc")
    assert [s.id for s in page.data] == mine[:2]
    following = await page.get_next_page()
    assert [s.id for s in following.data] == mine[2:4]
    after = await agents.sessions.list(agent_id=first, after=mine[3])
    assert [s.id for s in after.data] == mine[:3][::-1]
    team_x = [s.id async for s in agents.sessions.list(metadata={"team": "x"})]
    assert team_x == [mine[3], mine[1]]
    with pytest.raises(openai.BadRequestError, match="integer above maximum"):
        await agents.sessions.list(limit=101)


async def test_a_retry_with_the_same_key_is_applied_once(sim: Simulator, agents: AsyncAgents) -> None:
    session_id = sim.create_session(sim.create_agent("a", [ECHO]), json.loads(script(2, 2)))
    waiting = await agents.sessions.retrieve(session_id)
    answers = results(waiting)
    for _ in range(3):
        await agents.sessions.events.create(session_id, events=answers, idempotency_key="k1")
    assert [p.replayed for p in sim.events_posts] == [False, True, True]
    assert len(sim.tool_results(session_id)) == 2
    second = await agents.sessions.retrieve(session_id)
    assert second.status == "requires_action"
    assert {a.turn_id for a in second.required_actions} != {a["turn_id"] for a in answers}

    with pytest.raises(openai.BadRequestError) as reused:
        await agents.sessions.events.create(session_id, events=results(second),
                                            idempotency_key="k1")
    assert reused.value.code == "idempotency_key_reused"


async def test_answers_that_do_not_fit_are_refused_whole(sim: Simulator, agents: AsyncAgents) -> None:
    session_id = sim.create_session(sim.create_agent("a", [ECHO]), json.loads(script(2, 2)))
    waiting = await agents.sessions.retrieve(session_id)
    first, second = results(waiting)

    async def refused(events: list[Any]) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as caught:
            await agents.sessions.events.create(session_id, events=events)
        return caught.value

    unknown = await refused([first, {**second, "call_id": "call_nope"}])
    assert unknown.message.endswith("Unknown pending tool call: call_nope")
    assert unknown.code == "invalid_request_error"  # what the SDK's helper retries on
    assert (await refused([first, first])).code == "duplicate_tool_call"
    assert "belongs to turn" in (await refused([{**first, "turn_id": "turn_nope"}])).message
    bad_type = await refused([{**first, "success": "yes"}])
    assert bad_type.code == "invalid_type"
    assert bad_type.param == "events[0].success"
    assert sim.tool_results() == []  # nothing of a refused request applied

    # A partial answer is accepted; the session waits for the rest of the turn.
    await agents.sessions.events.create(session_id, events=[first])
    partial = await agents.sessions.retrieve(session_id)
    assert partial.status == "requires_action"
    assert [a.call_id for a in partial.required_actions] == [second["call_id"]]
    assert (await refused([first])).code == "tool_call_already_answered"
    await agents.sessions.events.create(session_id, events=[second])
    assert (await agents.sessions.retrieve(session_id)).required_actions[0].turn_id != \
        first["turn_id"]


async def test_a_cancelled_turns_calls_are_no_longer_pending(
    sim: Simulator, agents: AsyncAgents
) -> None:
    session_id = sim.create_session(sim.create_agent("a", [ECHO]), json.loads(script(2, 1)))
    answers = results(await agents.sessions.retrieve(session_id))
    await agents.sessions.events.create(session_id, events=[{"type": "agent.session.input.cancel"}])
    cancelled = await agents.sessions.retrieve(session_id)
    assert (cancelled.status, cancelled.required_actions) == ("idle", [])
    with pytest.raises(openai.BadRequestError) as late:
        await agents.sessions.events.create(session_id, events=answers)
    assert late.value.code == "tool_call_not_pending"
    assert "is cancelled" in late.value.message

    # A user message starts the next scripted turn.
    await agents.sessions.events.create(session_id, events=[{
        "type": "agent.session.input.message",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "again"}]}]}])
    again = await agents.sessions.retrieve(session_id)
    assert again.status == "requires_action"
    assert again.required_actions[0].arguments == {"text": "t1c0"}  # type: ignore[union-attr]


async def test_mcp_calls_wait_for_approval_decisions(sim: Simulator, agents: AsyncAgents) -> None:
    turns = [[{"name": "deploy", "arguments": {"env": "prod"}, "server_label": "ops"},
              {"name": "restart", "server_label": "ops"}]]
    session_id = sim.create_session(sim.create_agent("a"), turns)
    waiting = await agents.sessions.retrieve(session_id)
    requests = waiting.required_actions
    assert [a.type for a in requests] == ["mcp_approval_request"] * 2
    first = requests[0]
    assert first.type == "mcp_approval_request"
    assert (first.request.server_label, first.request.name) == ("ops", "deploy")
    with pytest.raises(openai.BadRequestError, match="mcp_approval_request_result"):
        await agents.sessions.events.create(session_id, events=[
            {"type": TOOL_RESULT, "call_id": first.request_id, "turn_id": first.turn_id,
             "success": True, "output": "x"}])
    await agents.sessions.events.create(session_id, events=[
        {"type": "agent.session.input.mcp_approval_request_result", "request_id": a.request_id,
         "response": {"type": "mcp_tool_call", "decision": decision}}  # type: ignore[union-attr]
        for a, decision in zip(requests, ("approve", "deny"), strict=True)])
    assert (await agents.sessions.retrieve(session_id)).status == "idle"


async def test_a_scripted_failure_fails_the_session(sim: Simulator, agents: AsyncAgents) -> None:
    turns = [{"calls": [{"name": "echo", "arguments": {"text": "x"}}], "fail": "model crashed"}]
    session_id = sim.create_session(sim.create_agent("a", [ECHO]), turns)
    waiting = await agents.sessions.retrieve(session_id)
    await agents.sessions.events.create(session_id, events=results(waiting))
    failed = await agents.sessions.retrieve(session_id)
    assert (failed.status, failed.error) == ("failed", "model crashed")


async def test_a_streaming_create_ends_when_the_turn_is_done(
    sim: Simulator, agents: AsyncAgents
) -> None:
    agent_id = sim.create_agent("a")  # no tools: the turn answers at once
    stream = await agents.sessions.create(agent_id=agent_id, environment={"type": "none"},
                                          input="hello", stream=True)
    kinds = [event.type async for event in stream]
    assert kinds[0] == "agent.session.created"
    assert kinds[-2:] == ["agent.session.turn.completed", "agent.session.idle"]


async def test_the_agents_beta_header_and_a_key_are_required(sim: Simulator) -> None:
    async with openai.AsyncOpenAI(api_key=sim.api_key, base_url=sim.base_url,
                                  max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError, match="agents=v1"):
            await sdk.get("/agents/sessions", cast_to=object)
        with pytest.raises(openai.NotFoundError, match="No session found"):
            await sdk.beta.agents.sessions.retrieve("sess_nope")
    async with openai.AsyncOpenAI(api_key="sk-wrong-key-123456", base_url=sim.base_url,
                                  max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.beta.agents.sessions.list()


async def test_turns_are_listed_and_retrieved(sim: Simulator, agents: AsyncAgents) -> None:
    session_id = sim.create_session(sim.create_agent("a", [ECHO]), json.loads(script(2, 1)))
    first = (await agents.sessions.retrieve(session_id)).required_actions[0]
    await agents.sessions.events.create(session_id, events=[{"type": "agent.session.input.cancel"}])
    turn = await agents.sessions.turns.retrieve(first.turn_id, session_id=session_id)  # type: ignore[union-attr]
    assert (turn.id, turn.status) == (first.turn_id, "cancelled")  # type: ignore[union-attr]
    listed = [t.id async for t in agents.sessions.turns.list(session_id)]
    assert listed == [first.turn_id]  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError, match="No turn found"):
        await agents.sessions.turns.retrieve("turn_nope", session_id=session_id)


async def test_the_sdks_own_session_helper_runs_a_turn(sim: Simulator, agents: AsyncAgents) -> None:
    """`sessions.stream(..., tool_handlers=...)` answers each call on its own (partial answers,
    a fresh key each) from `turn.item.added`, and ends with the turn's final message."""
    turns = [[{"name": "echo", "arguments": {"text": "a"}}, {"name": "echo", "arguments": {"text": "b"}}]]
    session_id = sim.create_session(sim.create_agent("a", [ECHO]), turns, input=None)

    async def echo(arguments: dict[str, Any]) -> dict[str, Any]:
        return {"said": arguments["text"]}

    async with agents.sessions.stream(session_id, input="go",
                                      tool_handlers={"echo": echo}) as stream:
        result = await stream.get_final_result()
    assert result.output_text == "Done: 2 call(s) answered."
    assert [(p.status, len(p.events)) for p in sim.events_posts] == [(202, 1)] * 3
    outputs = sorted(r["output"] for r in sim.tool_results(session_id))
    assert outputs == ['{"said":"a"}', '{"said":"b"}']
    assert sim.session(session_id)["status"] == "idle"


async def test_a_session_pauses_at_its_spend_limit_and_goes_on_when_it_is_raised(
    sim: Simulator, agents: AsyncAgents
) -> None:
    agent = await agents.create(model="gpt-5", name="demo", tools=[ECHO])  # type: ignore[list-item]
    session = await agents.sessions.create(
        agent_id=agent.id, environment={"type": "none"}, input="go",
        metadata={"sim_turns": script(1, 1)}, spend_control={"limit": 1})
    assert (session.spend_control.consumed, session.spend_control.limit) == (0, 1)
    stream = await agents.sessions.events.stream(session.id)
    kinds: list[str] = []
    async for event in stream:
        kinds.append(event.type)
        if event.type == "agent.session.requires_action":
            await agents.sessions.events.create(session.id, events=results(event.session))
        elif event.type == "agent.session.budget_reached":
            paused = event.session
            break
    await stream.close()
    # Asking the call cost the one cent; answering would spend past the limit.
    assert (paused.status, paused.spend_control.consumed) == ("budget_reached", 1)
    assert (await agents.sessions.retrieve(session.id)).status == "budget_reached"
    raised = await agents.sessions.update(session.id, spend_control={"limit": 5})
    assert raised.spend_control.limit == 5
    assert (await agents.sessions.retrieve(session.id)).status == "idle"
    assert kinds.count("agent.session.requires_action") == 1

"""A session's turns move with the clock: thinking, waiting, answering, the user's next message."""

from __future__ import annotations

import pytest

from tests.simulator.helpers import FakeClock
from worker.simulator import Simulator
from worker.simulator.agents_script import default_script, parse_turns, sample_arguments
from worker.simulator.wire import RequestRefused

ECHO = {"type": "function", "name": "echo"}


def answer_all(sim: Simulator, session_id: str) -> None:
    actions = sim.session(session_id)["required_actions"]
    sim.agents.post_events(session_id, {"events": [
        {"type": "agent.session.input.tool_result", "call_id": a["call_id"],
         "turn_id": a["turn_id"], "success": True, "output": "ok"} for a in actions]})


def test_turns_follow_thinking_time_and_the_users_pause() -> None:
    clock = FakeClock()
    sim = Simulator(clock=clock, thinking_s=1.0, user_pause_s=5.0)
    session_id = sim.create_session(sim.create_agent("a", [ECHO]), [[{"name": "echo"}]] * 2)
    assert sim.session(session_id)["status"] == "in_progress"
    clock.advance(0.99)
    assert sim.session(session_id)["status"] == "in_progress"
    clock.advance(0.01)
    assert sim.session(session_id)["status"] == "requires_action"
    answer_all(sim, session_id)
    assert sim.session(session_id)["status"] == "in_progress"  # thinking about the results
    clock.advance(1.0)
    assert sim.session(session_id)["status"] == "idle"
    assert not sim.all_sessions_idle()  # the user writes again in 5 s
    clock.advance(5.0)
    assert sim.session(session_id)["status"] == "in_progress"
    clock.advance(1.0)
    answer_all(sim, session_id)
    clock.advance(1.0)
    assert sim.session(session_id)["status"] == "idle"
    assert sim.all_sessions_idle()
    assert [t.status for t in sim.agents.session(session_id).turns] == ["completed"] * 2


def test_a_session_without_input_waits_for_a_message() -> None:
    sim = Simulator()
    session_id = sim.create_session(sim.create_agent("a", [ECHO]), [[{"name": "echo"}]],
                                    input=None)
    assert sim.session(session_id)["status"] == "idle"
    sim.start_turn(session_id)
    assert sim.session(session_id)["status"] == "requires_action"
    with pytest.raises(RequestRefused, match="not idle"):
        sim.start_turn(session_id)


def test_scripts_parse_or_say_what_they_expect() -> None:
    turns = parse_turns('[[{"name": "a", "arguments": {"x": 1}}], {"calls": [], "fail": "no"}]')
    assert [(len(t.calls), t.fail) for t in turns] == [(1, None), (0, "no")]
    assert turns[0].calls[0].arguments == {"x": 1}
    with pytest.raises(RequestRefused, match="expected a JSON list of turns"):
        parse_turns('{"name": "a"}')
    with pytest.raises(RequestRefused, match="all MCP calls"):
        parse_turns([[{"name": "a"}, {"name": "b", "server_label": "s"}]])


def test_an_unscripted_session_calls_each_function_tool_with_sample_arguments() -> None:
    schema = {"type": "object", "required": ["city", "days", "unit", "where"],
              "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                             "unit": {"enum": ["c", "f"]},
                             "where": {"type": "object", "required": ["lat"],
                                       "properties": {"lat": {"type": "number"}}}}}
    assert sample_arguments(schema) == {"city": "sample", "days": 1, "unit": "c",
                                        "where": {"lat": 1}}
    (turn,) = default_script([{"type": "function", "name": "w", "parameters": schema},
                              {"type": "web_search"}])
    assert [call.name for call in turn.calls] == ["w"]

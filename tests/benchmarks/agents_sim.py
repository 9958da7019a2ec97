"""The simulator side of an Agents API scenario: sessions instead of threads, turns as rounds.

The sessions exist (idle, each with its scripted turns) before the system starts; ``start``
sends each its first user message, as ``start`` creates the runs of an Assistants scenario.
The measurements have the Assistants scenarios' shape: a turn is a round, an applied events
request an accepted submission.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from tests.benchmarks.scenarios import scripts

if TYPE_CHECKING:
    from tests.benchmarks.scenarios import Scenario
    from worker.simulator import Simulator

__all__ = ["TOOLS", "create_sessions", "measurements", "start_sessions"]

TOOLS = [{"type": "function", "name": "work",
          "parameters": {"type": "object", "properties": {"ms": {"type": "integer"},
                                                          "fail": {"type": "boolean"}}}},
         {"type": "function", "name": "noop"}]


def create_sessions(sim: Simulator, scenario: Scenario, seed: int) -> list[str]:
    """One idle session a run, scripted with the run's rounds as turns."""
    agent_id = sim.create_agent("bench", TOOLS)
    return [
        sim.create_session(agent_id, [[{"name": call.name, "arguments": json.loads(call.arguments)}
                                       for call in round_] for round_ in rounds], input=None)
        for rounds in scripts(scenario, seed)
    ]


def start_sessions(sim: Simulator, sessions: list[str]) -> None:
    """Each session's first turn starts now."""
    for session_id in sessions:
        sim.start_turn(session_id)


def measurements(sim: Simulator, scenario: Scenario, started_at: float | None) -> dict[str, Any]:
    """What `sim_runner` reports, from the Agents API's side of the simulator."""
    turn_index = {turn.id: (session.id, index) for session in sim.agents.sessions()
                  for index, turn in enumerate(session.turns)}
    accepted = []
    for post in sim.applied_posts():
        for turn_id in post.turn_ids:
            session_id, index = turn_index[turn_id]
            results = [e for e in post.events if e.get("turn_id") == turn_id]
            errors = sum(1 for e in results if not e.get("success")
                         or str(e.get("output", "")).startswith("Error"))
            accepted.append([session_id, index, post.at, len(results), errors])
    return {
        "started_at": started_at,
        "total_rounds": scenario.total_rounds,
        "total_calls": scenario.total_calls,
        "rounds_visible": [[session_id, index, at] for (session_id, index), at in
                           sim.turns_visible.items()],
        "accepted": accepted,
        "refused": sum(1 for post in sim.events_posts if post.status != 202),
        "request_counts": dict(sim.request_counts),
        "faults_injected": dict(sim.faults_injected),
        "cpu_s": time.process_time(),
    }

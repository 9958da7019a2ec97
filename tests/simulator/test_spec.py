"""Every answer of the simulator matches the official OpenAPI schemas, and the check is live."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from worker.simulator import Simulator, ToolCallScript
from worker.simulator.state import ApiState

from .helpers import SPEC, FakeClock, SimHttp

ECHO = ToolCallScript("echo", '{"text": "hi"}')


def _run_in_every_status() -> list[dict[str, Any]]:
    clock = FakeClock()
    state = ApiState(thinking_s=2.0, expires_after_s=10.0, clock=clock)
    assistant = state.create_assistant({"name": "demo"})["id"]
    runs: list[dict[str, Any]] = []

    def start(rounds: list[list[ToolCallScript]]) -> tuple[str, str]:
        thread = state.create_thread()["id"]
        runs.append(state.create_run(thread, {"assistant_id": assistant}, rounds))  # queued
        return thread, runs[-1]["id"]

    thread, run = start([[ECHO]])
    clock.advance(1.0)
    runs.append(state.retrieve_run(thread, run))  # in_progress
    clock.advance(1.0)
    runs.append(state.retrieve_run(thread, run))  # requires_action
    runs.append(state.cancel_run(thread, run))  # cancelling
    runs.append(state.retrieve_run(thread, run))  # cancelled
    thread, run = start([])
    clock.advance(2.0)
    runs.append(state.retrieve_run(thread, run))  # completed
    thread, run = start([[ECHO]])
    clock.advance(10.0)
    runs.append(state.retrieve_run(thread, run))  # expired
    return runs


def test_run_object_in_every_status_matches_the_spec() -> None:
    runs = _run_in_every_status()
    assert [r["status"] for r in runs] == [
        "queued", "in_progress", "requires_action", "cancelling", "cancelled", "queued",
        "completed", "queued", "expired",
    ]
    schema = SPEC.schemas["RunObject"]
    for run in runs:
        SPEC.validate("RunObject", run)
        # Every field the spec names, and nothing else (temperature and top_p are optional there).
        assert set(run) == set(schema["properties"])


def test_validation_is_live() -> None:
    run = _run_in_every_status()[2]
    broken: list[dict[str, Any]] = [
        {k: v for k, v in run.items() if k != "usage"},
        {**run, "status": "thinking"},
        {**run, "created_at": 1.5},
        {**run, "required_action": {"type": "submit_tool_outputs"}},
        {**run, "expires_at": "soon"},
    ]
    for instance in broken:
        with pytest.raises(jsonschema.ValidationError):
            SPEC.validate("RunObject", instance)
    SPEC.validate("RunObject", {**run, "expires_at": None, "truncation_strategy": None})
    with pytest.raises(jsonschema.ValidationError):
        SPEC.validate("ErrorResponse", {"error": {"message": "x", "type": "y"}})


async def test_every_endpoint_answers_per_the_spec(sim: Simulator, api: SimHttp) -> None:
    """SimHttp validates each answer; here each endpoint is driven once, errors included."""
    tool = {"type": "function", "function": {"name": "echo", "parameters": {"type": "object"}}}
    assistant = (await api.post("/assistants", {"model": "gpt-4o", "tools": [tool]})).body["id"]
    await api.get("/assistants")
    await api.get(f"/assistants/{assistant}")
    await api.post(f"/assistants/{assistant}", {"description": "d", "temperature": 0.5})
    thread = (await api.post("/threads", {"metadata": {"k": "v"}})).body["id"]
    await api.get(f"/threads/{thread}")
    await api.post(f"/threads/{thread}/messages", {"role": "user", "content": "hi"})
    script = json.dumps([[{"name": "echo", "arguments": "{}"}]])
    run = (await api.post(
        f"/threads/{thread}/runs",
        {"assistant_id": assistant, "metadata": {"sim_rounds": script}, "temperature": 0.2},
    )).body
    await api.get(f"/threads/{thread}/runs")
    ready = (await api.get(f"/threads/{thread}/runs/{run['id']}")).body
    calls = ready["required_action"]["submit_tool_outputs"]["tool_calls"]
    outputs = [{"tool_call_id": c["id"], "output": "ok"} for c in calls]
    await api.post(f"/threads/{thread}/runs/{run['id']}/submit_tool_outputs",
                   {"tool_outputs": outputs})
    await api.get(f"/threads/{thread}/messages")
    second = (await api.post(
        "/threads/runs", {"assistant_id": assistant, "metadata": {"sim_rounds": script}}
    )).body
    await api.post(f"/threads/{second['thread_id']}/runs/{second['id']}/cancel")
    errors = [
        await api.get("/threads/thread_nope"),
        await api.post(f"/threads/{thread}/runs/{run['id']}/cancel"),
        await api.get(f"/threads/{thread}/runs", limit="0"),
    ]
    assert [e.status for e in errors] == [404, 400, 400]
    implemented = {
        op["operationId"]
        for item in SPEC.document["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    } - {"modifyThread", "deleteThread", "modifyRun", "deleteAssistant"}
    assert api.operations_seen == implemented

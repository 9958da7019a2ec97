"""The simulator explains itself: a run without a script calls its tools, and what the worker
submitted is visible in the final message and at GET /_sim/runs/{run_id}/outputs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import aiohttp
import pytest

from worker.cli import main
from worker.simulator import RUN_SCRIPT_HELP

if TYPE_CHECKING:
    from tests.simulator.helpers import SimHttp
    from worker.simulator import Simulator

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                           "unit": {"enum": ["c", "f"]}, "note": {"type": "string"}},
            "required": ["city", "days", "unit"],
        },
    },
}
ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}}}


async def start(api: SimHttp, tools: list[dict[str, object]],
                metadata: dict[str, str] | None = None) -> dict[str, object]:
    assistant = await api.post("/assistants", {"model": "gpt-4o", "tools": tools})
    thread = await api.post("/threads", {})
    body: dict[str, object] = {"assistant_id": assistant.body["id"]}
    if metadata is not None:
        body["metadata"] = metadata
    await api.post(f"/threads/{thread.body['id']}/runs", body)
    runs = await api.get(f"/threads/{thread.body['id']}/runs")
    run: dict[str, object] = runs.body["data"][0]
    return run


async def test_a_run_without_a_script_calls_each_function_tool_with_sample_arguments(
    api: SimHttp,
) -> None:
    """Its assistant's function tools, once each in one round, every required property set."""
    run = await start(api, [WEATHER, ADD])
    assert run["status"] == "requires_action"
    calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]  # type: ignore[index]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("weather", {"city": "sample", "days": 1, "unit": "c"}), ("add", {"a": 1})]


async def test_an_empty_sim_rounds_asks_for_no_tool_call(api: SimHttp) -> None:
    """`"sim_rounds": "[]"` keeps the old behaviour: the run completes without a call."""
    run = await start(api, [WEATHER], metadata={"sim_rounds": "[]"})
    assert run["status"] == "completed"


async def test_the_outputs_show_in_the_final_message_and_at_the_sim_endpoint(
    sim: Simulator, api: SimHttp,
) -> None:
    """After the submission, the run's last message lists each output, and
    GET /_sim/runs/{run_id}/outputs gives them whole (with the key, without the beta header)."""
    run = await start(api, [ADD])
    calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]  # type: ignore[index]
    path = f"/threads/{run['thread_id']}/runs/{run['id']}"
    await api.post(f"{path}/submit_tool_outputs",
                   {"tool_outputs": [{"tool_call_id": calls[0]["id"], "output": "2"}]})
    messages = await api.get(f"/threads/{run['thread_id']}/messages")
    final = messages.body["data"][0]["content"][0]["text"]["value"]
    assert final == "Done after 1 round(s) of tool calls. Outputs: round 1: add -> 2"
    url = f"http://127.0.0.1:{sim.port}/_sim/runs/{run['id']}/outputs"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers={"Authorization": f"Bearer {sim.api_key}"}) as answer:
            assert answer.status == 200
            seen = await answer.json()
        async with session.get(url) as refused:
            assert refused.status == 401
    assert seen["status"] == "completed"
    assert seen["outputs"] == [{"round": 1, "tool": "add", "output": "2"}]


def test_simulate_help_says_how_to_script_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    """`simulate --help` names sim_rounds, the default script and where outputs show."""
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for words in ("sim_rounds", "calls each function tool of its assistant once",
                  "/_sim/runs/{run_id}/outputs"):
        assert words in out
    assert "sim_rounds" in RUN_SCRIPT_HELP

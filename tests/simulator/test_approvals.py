"""Azure's tool approvals: MCP rounds ask for submit_tool_approval and take tool_approvals."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from worker.simulator import Simulator, ToolCallScript

KEY = "azure-key-123"
MCP = [ToolCallScript("search_code", '{"q": "x"}', server_label="github"),
       ToolCallScript("get_issue", '{"n": 1}', server_label="github")]
FUNCTION = [ToolCallScript("add", '{"a": 1}')]


async def submit(sim: Simulator, run: dict[str, Any], body: object) -> tuple[int, Any]:
    """POST submit_tool_outputs as the profile wants it; (status, JSON answer)."""
    url = f"{sim.base_url}/threads/{run['thread_id']}/runs/{run['id']}/submit_tool_outputs"
    if sim.profile == "azure":
        headers, params = {"api-key": KEY}, {"api-version": "v1"}
    else:
        headers, params = {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "assistants=v2"}, {}
    async with aiohttp.ClientSession() as session, session.post(
            url, json=body, headers=headers, params=params) as response:
        return response.status, await response.json()


def start(sim: Simulator, rounds: list[list[ToolCallScript]]) -> dict[str, Any]:
    run_id = sim.create_run(sim.create_thread(), sim.create_assistant(name="a"), rounds=rounds)
    return sim.run(run_id)


def approvals(run: dict[str, Any], approve: bool = True) -> dict[str, Any]:
    calls = run["required_action"]["submit_tool_approval"]["tool_calls"]
    return {"tool_approvals": [{"tool_call_id": c["id"], "approve": approve} for c in calls]}


async def test_an_mcp_round_asks_for_approval_with_the_sdks_shape() -> None:
    """Each MCP call is flat: id, type "mcp", name, arguments and server_label."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        run = start(sim, [MCP])
    action = run["required_action"]
    assert action["type"] == "submit_tool_approval"
    (first, _) = action["submit_tool_approval"]["tool_calls"]
    assert set(first) == {"id", "type", "name", "arguments", "server_label"}
    assert (first["type"], first["name"], first["server_label"]) == ("mcp", "search_code", "github")


async def test_approvals_move_the_run_on_to_its_next_round() -> None:
    """Approved or denied, the run goes on; the submission records each decision."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        run = start(sim, [MCP, FUNCTION])
        body = approvals(run)
        body["tool_approvals"][1]["approve"] = False
        body["tool_approvals"][0]["headers"] = {"X-Token": "t"}
        status, answer = await submit(sim, run, body)
        after = sim.run(run["id"])
        (submission,) = sim.accepted_submissions(run["id"])
    assert status == 200
    assert answer["status"] == "queued"
    assert after["required_action"]["type"] == "submit_tool_outputs"
    assert [approve for _, approve in submission.tool_approvals] == [True, False]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"tool_approvals": []}, "non-empty array"),
    ({"tool_approvals": [{"tool_call_id": "call_x", "approve": "yes"}]}, "approve"),
    ({"tool_approvals": [{"tool_call_id": "call_x"}]}, "Missing required parameter"),
    ({"tool_approvals": [{"tool_call_id": "call_x", "approve": True, "extra": 1}]}, "Unknown"),
])
async def test_malformed_approvals_are_refused(body: dict[str, Any], fragment: str) -> None:
    """A body that is not a list of {tool_call_id, approve} objects is a 400."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        run = start(sim, [MCP])
        status, answer = await submit(sim, run, body)
    assert status == 400
    assert fragment in answer["error"]["message"]


async def test_mismatched_ids_are_refused_as_for_outputs() -> None:
    """Approvals that leave out a call, or name another, are refused whole."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        run = start(sim, [MCP])
        body = approvals(run)
        missing = await submit(sim, run, {"tool_approvals": body["tool_approvals"][:1]})
        other = await submit(sim, run, {"tool_approvals": [
            *body["tool_approvals"][:1], {"tool_call_id": "call_other", "approve": True}]})
        still = sim.run(run["id"])["status"]
    assert missing[0] == other[0] == 400
    assert still == "requires_action"


async def test_the_wrong_kind_of_answer_is_refused() -> None:
    """Outputs for an approval round, or approvals for a round of function calls, are a 400."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        mcp_run = start(sim, [MCP])
        calls = mcp_run["required_action"]["submit_tool_approval"]["tool_calls"]
        outputs = {"tool_outputs": [{"tool_call_id": c["id"], "output": "x"} for c in calls]}
        to_mcp = await submit(sim, mcp_run, outputs)
        function_run = start(sim, [FUNCTION])
        (call,) = function_run["required_action"]["submit_tool_outputs"]["tool_calls"]
        to_function = await submit(sim, function_run, {
            "tool_approvals": [{"tool_call_id": call["id"], "approve": True}]})
    assert to_mcp[0] == to_function[0] == 400
    assert "tool_approvals" in to_mcp[1]["error"]["message"]


async def test_the_openai_profile_refuses_tool_approvals() -> None:
    """OpenAI's submit_tool_outputs has no tool_approvals parameter."""
    async with Simulator(api_key=KEY) as sim:
        run = start(sim, [MCP])
        status, answer = await submit(sim, run, approvals(run))
    assert status == 400
    assert answer["error"]["code"] == "unknown_parameter"


async def test_a_round_mixing_mcp_and_function_calls_is_refused() -> None:
    """A scripted round is all MCP calls or none, as one required_action is of one kind."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        with pytest.raises(ValueError, match="all MCP calls"):
            start(sim, [[*MCP, *FUNCTION]])

"""Tool approvals of Azure's agents service: MCP calls that wait for a yes or no, and the answers.

Shapes from the azure-ai-agents SDK (`azure/ai/agents/models/_models.py`): a run asks with
`required_action = {"type": "submit_tool_approval", "submit_tool_approval": {"tool_calls":
[RequiredMcpToolCall]}}`, each call `{"id", "type": "mcp", "name", "arguments",
"server_label"}`; the answer is `{"tool_approvals": [ToolApproval]}` on submit_tool_outputs,
each `{"tool_call_id", "approve", "headers"?}`. The error texts here are the simulator's own:
the service's are not published.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.simulator.wire import check_fields, invalid_type, refuse

if TYPE_CHECKING:
    from worker.simulator.wire import RequestRefused, ToolCallScript

__all__ = ["APPROVAL_ACTION", "OUTPUTS_ACTION", "mcp_call", "parse_tool_approvals",
           "round_action", "wrong_answer"]

APPROVAL_ACTION = "submit_tool_approval"
OUTPUTS_ACTION = "submit_tool_outputs"


def round_action(calls: tuple[ToolCallScript, ...], run_action: str) -> str:
    """The action a round asks for: approvals when its calls are MCP calls, else the run's."""
    return APPROVAL_ACTION if calls and calls[0].server_label is not None else run_action


def mcp_call(call_id: str, call: ToolCallScript) -> dict[str, Any]:
    """A RequiredMcpToolCall: flat, unlike a function call's nested `function` object."""
    return {"id": call_id, "type": "mcp", "name": call.name, "arguments": call.arguments,
            "server_label": call.server_label}


def parse_tool_approvals(body: object) -> tuple[tuple[str, bool], ...]:
    """The (tool_call_id, approve) pairs of a `tool_approvals` body, or a 400."""
    fields = check_fields(body, {"tool_approvals", "stream"}, ["tool_approvals"])
    if fields.get("stream") is not None and not isinstance(fields["stream"], bool):
        raise invalid_type("stream", "a boolean", fields["stream"])
    items = fields["tool_approvals"]
    if not isinstance(items, list) or not items:
        raise invalid_type("tool_approvals", "a non-empty array", items)
    pairs = []
    for index, item in enumerate(items):
        where = f"tool_approvals[{index}]"
        approval = check_fields(item, {"tool_call_id", "approve", "headers"},
                                ["tool_call_id", "approve"], where=f"{where}.")
        if not isinstance(approval["tool_call_id"], str):
            raise invalid_type(f"{where}.tool_call_id", "a string", approval["tool_call_id"])
        if not isinstance(approval["approve"], bool):
            raise invalid_type(f"{where}.approve", "a boolean", approval["approve"])
        _check_headers(approval.get("headers"), f"{where}.headers")
        pairs.append((approval["tool_call_id"], approval["approve"]))
    return tuple(pairs)


def _check_headers(headers: object, param: str) -> None:
    if headers is None:
        return
    if not isinstance(headers, dict):
        raise invalid_type(param, "an object", headers)
    for name, value in headers.items():
        if not isinstance(value, str):
            raise invalid_type(f"{param}.{name}", "a string", value)


def wrong_answer(waiting_for: str) -> RequestRefused:
    """The 400 for outputs sent to a run that waits for approvals, or the other way round."""
    wanted = "tool_approvals" if waiting_for == APPROVAL_ACTION else "tool_outputs"
    return refuse(f"The run waits for {waiting_for}; send '{wanted}'.", param=wanted)

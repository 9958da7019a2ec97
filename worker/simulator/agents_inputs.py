"""Request bodies of the simulated Agents API, checked field by field as the API refuses them.

Input events follow the SDK's `AgentSessionInputParam`; session and agent bodies its
`SessionCreateParams` and `AgentCreateParams`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.simulator.wire import check_fields, check_metadata, invalid_type, refuse

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AGENT_FIELDS",
    "CANCEL",
    "COMPUTER_USE_RESULT",
    "MCP_RESULT",
    "MESSAGE",
    "SESSION_FIELDS",
    "TOOL_RESULT",
    "check_agent",
    "check_environment",
    "check_vault_ids",
    "input_text",
    "parse_events",
    "spend_limit",
]

TOOL_RESULT = "agent.session.input.tool_result"
MCP_RESULT = "agent.session.input.mcp_approval_request_result"
COMPUTER_USE_RESULT = "agent.session.input.computer_use_approval_request_result"
MESSAGE = "agent.session.input.message"
CANCEL = "agent.session.input.cancel"

# Each input event's fields: (allowed, required).
_INPUTS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    TOOL_RESULT: (frozenset({"type", "call_id", "turn_id", "success", "output", "error"}),
                  ("call_id", "turn_id", "success")),
    MCP_RESULT: (frozenset({"type", "request_id", "response"}), ("request_id", "response")),
    COMPUTER_USE_RESULT: (frozenset({"type", "request_id", "response"}),
                          ("request_id", "response")),
    MESSAGE: (frozenset({"type", "input"}), ("input",)),
    CANCEL: (frozenset({"type"}), ()),
}
_MAX_EVENTS = 100
AGENT_FIELDS = frozenset({
    "model", "compaction", "experimental", "instructions", "metadata", "multi_agent", "name",
    "reasoning", "service_tier", "text", "tools",
})
SESSION_FIELDS = frozenset({
    "environment", "agent", "agent_id", "input", "metadata", "prompt_cache_options", "review",
    "vault_ids", "stream", "stream_options", "spend_control",
})
_ENVIRONMENTS = ("none", "openai_hosted", "self_hosted")


def parse_events(body: object) -> list[dict[str, Any]]:
    """The input events of a `POST /agents/sessions/{id}/events` body, each checked, or a 400."""
    events = check_fields(body, {"events"}, ["events"])["events"]
    if not isinstance(events, list) or not events:
        raise invalid_type("events", "a non-empty array", events)
    if len(events) > _MAX_EVENTS:
        raise refuse(f"Invalid 'events': at most {_MAX_EVENTS} events a request, got "
                     f"{len(events)}.", param="events", code="array_above_max_length")
    for index, event in enumerate(events):
        _check_event(event, f"events[{index}]")
    return events


def _check_event(event: object, where: str) -> None:
    kind = event.get("type") if isinstance(event, dict) else None
    if kind not in _INPUTS:
        raise refuse(f"Invalid value for '{where}.type': expected one of "
                     f"{', '.join(repr(k) for k in _INPUTS)}.", param=f"{where}.type",
                     code="invalid_value")
    allowed, required = _INPUTS[kind]
    fields = check_fields(event, allowed, required, where=f"{where}.")
    for name in ("call_id", "turn_id", "request_id"):
        if name in fields and (not isinstance(fields[name], str) or not fields[name]):
            raise invalid_type(f"{where}.{name}", "a non-empty string", fields[name])
    if kind == TOOL_RESULT:
        _check_tool_result(fields, where)
    elif kind == MCP_RESULT:
        _check_decision(fields["response"], f"{where}.response")
    elif kind == MESSAGE:
        input_text(fields["input"], f"{where}.input", strings=False)


def _check_tool_result(fields: Mapping[str, Any], where: str) -> None:
    if not isinstance(fields["success"], bool):
        raise invalid_type(f"{where}.success", "a boolean", fields["success"])
    if fields.get("error") is not None and not isinstance(fields["error"], str):
        raise invalid_type(f"{where}.error", "a string", fields["error"])
    output = fields.get("output")
    if output is None or isinstance(output, str):
        return
    if not isinstance(output, list):
        raise invalid_type(f"{where}.output", "a string or an array", output)
    for index, part in enumerate(output):
        _check_part(part, f"{where}.output[{index}]")


def _check_part(part: object, where: str) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    wanted = {"input_text": "text", "input_image": "image_url"}
    if kind not in wanted:
        raise refuse(f"Invalid value for '{where}.type': expected 'input_text' or "
                     "'input_image'.", param=f"{where}.type", code="invalid_value")
    fields = check_fields(part, {"type", wanted[kind]}, [wanted[kind]], where=f"{where}.")
    if not isinstance(fields[wanted[kind]], str):
        raise invalid_type(f"{where}.{wanted[kind]}", "a string", fields[wanted[kind]])


def _check_decision(response: object, where: str) -> None:
    fields = check_fields(response, {"type", "decision"}, ["type", "decision"], where=f"{where}.")
    if fields["type"] != "mcp_tool_call":
        raise refuse(f"Invalid value for '{where}.type': expected 'mcp_tool_call'.",
                     param=f"{where}.type", code="invalid_value")
    if fields["decision"] not in ("approve", "deny", "cancel"):
        raise refuse(f"Invalid value for '{where}.decision': expected 'approve', 'deny' or "
                     "'cancel'.", param=f"{where}.decision", code="invalid_value")


def input_text(value: object, param: str, *, strings: bool = True) -> str:
    """The text of user input: a string (where allowed) or a list of user messages."""
    if isinstance(value, str) and strings:
        return value
    if not isinstance(value, list) or not value:
        raise invalid_type(param, "a string or a non-empty array" if strings
                           else "a non-empty array", value)
    texts = []
    for index, message in enumerate(value):
        where = f"{param}[{index}]"
        fields = check_fields(message, {"role", "content", "type"}, ["role", "content"],
                              where=f"{where}.")
        if fields["role"] != "user" or fields.get("type", "message") != "message":
            raise refuse(f"Invalid value for '{where}.role': expected 'user'.",
                         param=f"{where}.role", code="invalid_value")
        content = fields["content"]
        if not isinstance(content, list) or not content:
            raise invalid_type(f"{where}.content", "a non-empty array", content)
        for part_index, part in enumerate(content):
            _check_part(part, f"{where}.content[{part_index}]")
            texts.append(part.get("text") or "")
    return "\n".join(texts)


def check_environment(value: object) -> dict[str, Any]:
    """An environment parameter (`{"type": "none" | "openai_hosted" | "self_hosted", ...}`)."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in _ENVIRONMENTS:
        raise refuse("Invalid value for 'environment.type': expected one of 'none', "
                     "'openai_hosted' or 'self_hosted'.", param="environment.type",
                     code="invalid_value")
    assert isinstance(value, dict)  # noqa: S101 - narrowed by the check above
    return value


def spend_limit(value: object) -> int | None:
    """`spend_control`'s limit in USD cents: a positive integer, or None (null) for no limit."""
    if value is None:
        return None
    limit = check_fields(value, {"limit"}, ["limit"], where="spend_control.")["limit"]
    if limit is not None and (type(limit) is not int or limit <= 0):
        raise invalid_type("spend_control.limit", "a positive integer or null", limit)
    return limit


def check_vault_ids(value: object) -> list[str]:
    """`vault_ids`: an array of strings; null reads as none."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_type("vault_ids", "an array of strings", value)
    return value


def check_agent(body: object, where: str = "") -> dict[str, Any]:
    """Agent settings (a saved agent's body, or a session's inline `agent`)."""
    allowed = AGENT_FIELDS if not where else AGENT_FIELDS - {"metadata", "name"}
    fields = check_fields(body, allowed, ["model"], where=where)
    for name in ("model", "instructions", "name"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise invalid_type(f"{where}{name}", "a string", fields[name])
    tools = fields.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid_type(f"{where}tools", "an array", tools)
    for index, tool in enumerate(tools or ()):
        param = f"{where}tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise invalid_type(f"{param}.type", "a string", tool)
        if tool["type"] == "function" and not isinstance(tool.get("name"), str):
            raise invalid_type(f"{param}.name", "a string", tool.get("name"))
    check_metadata(fields.get("metadata"), f"{where}metadata")
    return fields

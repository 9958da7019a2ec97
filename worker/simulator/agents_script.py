"""Scripts of the simulated Agents API: which turns a session makes and which calls each asks for.

A session's script is a list of turns. Each turn is a list of calls, or an object
`{"calls": [...], "fail": "why"}` whose turn fails (and the session with it) once its calls are
answered. A call is `{"name": "get_weather", "arguments": {"city": "Paris"}}`: `arguments` is
sent as given (a JSON object, as the API sends it; a string stays a string). A call with a
`server_label` is an MCP tool call that waits for approval (`mcp_approval_request`).

The script comes from `metadata["sim_turns"]` (a JSON string) when the session is created, else
from the simulator's `default_turns`, else from the agent's function tools: one turn calling
each of them once with arguments made from its parameters' schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.simulator.wire import refuse

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["SCRIPT_HELP", "CallScript", "TurnScript", "default_script", "parse_turns"]

SCRIPT_HELP = (
    'script a session with metadata {"sim_turns": "[[{\\"name\\": \\"echo\\", \\"arguments\\": '
    '{\\"text\\": \\"hi\\"}}], [...]]"}: a JSON list of turns, each a list of function calls '
    '(or {"calls": [...], "fail": "why"}); without it a session calls each of its agent\'s '
    "function tools once"
)

_EXAMPLE = '[[{"name": "echo", "arguments": {"text": "hi"}}]]'


@dataclass(frozen=True, slots=True)
class CallScript:
    """One call the scripted model makes: a function call, or an MCP call with `server_label`."""

    name: str
    arguments: Any = None
    server_label: str | None = None

    def __post_init__(self) -> None:
        if self.arguments is None:
            object.__setattr__(self, "arguments", {})


@dataclass(frozen=True, slots=True)
class TurnScript:
    """One turn: its calls (all asked at once), then an answer, or a failure when `fail` is set."""

    calls: tuple[CallScript, ...] = ()
    fail: str | None = None

    @property
    def approvals(self) -> bool:
        """Whether the turn asks for MCP approvals rather than function results."""
        return bool(self.calls) and self.calls[0].server_label is not None


def parse_turns(text: object, param: str = "metadata.sim_turns") -> tuple[TurnScript, ...]:
    """Turns from a `sim_turns` JSON string (or already parsed list), or the API's 400."""
    try:
        raw: Any = json.loads(text) if isinstance(text, str) else text
        if not isinstance(raw, list):
            raise TypeError("not a list")
        turns = tuple(_turn(item) for item in raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise refuse(
            f"Invalid '{param}': expected a JSON list of turns like {_EXAMPLE}, each turn a list "
            f'of calls or {{"calls": [...], "fail": "why"}} ({exc}).',
            param=param,
        ) from exc
    return turns


def _turn(item: object) -> TurnScript:
    if isinstance(item, TurnScript):
        return item
    if isinstance(item, dict):
        fail = item.get("fail")
        if fail is not None and not isinstance(fail, str):
            raise TypeError("'fail' must be a string")
        return TurnScript(tuple(_call(call) for call in item.get("calls") or ()), fail)
    if not isinstance(item, list):
        raise TypeError("a turn must be a list of calls or an object")
    turn = TurnScript(tuple(_call(call) for call in item))
    if len({call.server_label is None for call in turn.calls}) > 1:
        raise ValueError("a turn is all MCP calls (with server_label) or none")
    return turn


def _call(call: object) -> CallScript:
    if isinstance(call, CallScript):
        return call
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise TypeError('each call needs a "name" string')
    label = call.get("server_label")
    return CallScript(call["name"], call.get("arguments"), None if label is None else str(label))


def default_script(tools: Sequence[Mapping[str, Any]]) -> tuple[TurnScript, ...]:
    """One turn calling each function tool once, with arguments its parameters accept."""
    calls = tuple(
        CallScript(str(tool["name"]), sample_arguments(tool.get("parameters") or {}))
        for tool in tools
        if tool.get("type") == "function" and isinstance(tool.get("name"), str)
    )
    return (TurnScript(calls),) if calls else (TurnScript(),)


def sample_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An object holding a plain value for each required property of a JSON Schema."""
    properties = schema.get("properties") or {}
    return {
        name: _sample(properties.get(name) or {})
        for name in schema.get("required") or ()
        if isinstance(name, str)
    }


def _sample(schema: Mapping[str, Any]) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    samples: dict[str, Any] = {"integer": 1, "number": 1, "boolean": True, "array": [],
                               "null": None}
    if kind == "object":
        return sample_arguments(schema)
    return samples.get(str(kind), "sample")

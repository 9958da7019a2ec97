"""What the simulated Agents API knows of agents, sessions, turns and calls, and their JSON.

Shapes follow the official SDK's types (`openai.types.beta.agent`, `agent_session`,
`agents.sessions.turn`, `agent_function_call_item`, ...): every required field is present and
no other, which tests/simulator checks by strict validation against those pydantic models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.simulator.agents_script import CallScript, TurnScript

__all__ = [
    "AgentRecord",
    "PendingCall",
    "SessionRecord",
    "TurnRecord",
    "function_tool",
    "usage",
]

_AGENT_DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "multi_agent": {"enabled": False, "max_concurrent_subagents": None},
    "name": None,
    "reasoning": {"effort": None, "summary": None},
    "service_tier": "auto",
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tools": [],
}


def _epoch(moment: float | None) -> int | None:
    return None if moment is None else math.floor(moment)


def usage(turns: int) -> dict[str, Any]:
    """Token usage that grows with the turns taken, for a `TokenUsage`."""
    return {"input_tokens": 100 * turns, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 20 * turns, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 120 * turns}


def function_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as the API shows it: a function tool gets its defaults, others are kept as sent."""
    if tool.get("type") != "function":
        return dict(tool)
    shown = {"type": "function", "name": tool.get("name"),
             "description": tool.get("description") or "",
             "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
             "defer_loading": bool(tool.get("defer_loading", False))}
    if tool.get("async") is not None:
        shown["async"] = bool(tool["async"])
    return shown


@dataclass(slots=True)
class AgentRecord:
    """A saved agent (`POST /agents`), or the inline agent of one session."""

    id: str
    created_at: float
    settings: dict[str, Any]  # model, instructions, name, tools, ... as the API shows them
    metadata: dict[str, str] = field(default_factory=dict)
    updated_at: float = 0.0

    @classmethod
    def from_params(cls, agent_id: str, now: float, params: dict[str, Any]) -> AgentRecord:
        """An agent from validated create fields; unset ones take the API's defaults."""
        settings = {**_AGENT_DEFAULTS, "model": params.get("model")}
        for name in ("instructions", "name", "multi_agent", "reasoning", "service_tier", "text"):
            if params.get(name) is not None:
                settings[name] = params[name]
        settings["tools"] = [function_tool(t) for t in params.get("tools") or ()]
        metadata = dict(params.get("metadata") or {})
        return cls(agent_id, now, settings, metadata, now)

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The agent's tools."""
        return list(self.settings["tools"])

    def render(self) -> dict[str, Any]:
        """The `Agent` object (`object: "agent"`)."""
        return {"id": self.id, "object": "agent", "created_at": _epoch(self.created_at),
                "updated_at": _epoch(self.updated_at), "metadata": dict(self.metadata),
                **self.snapshot(with_id=False)}

    def snapshot(self, *, with_id: bool = True) -> dict[str, Any]:
        """The agent as a session shows it (its settings when the session was created)."""
        shown = {key: self.settings[key] for key in (*_AGENT_DEFAULTS, "model")}
        shown["tools"] = [dict(tool) for tool in shown["tools"]]
        return {"id": self.id, **shown} if with_id else shown


@dataclass(slots=True)
class PendingCall:
    """A call the model made in a turn, and the answer it got."""

    call_id: str
    item_id: str
    script: CallScript
    answer: dict[str, Any] | None = None  # the input event that answered it

    @property
    def approval(self) -> bool:
        """Whether it is an MCP call waiting for approval (answered by request_id)."""
        return self.script.server_label is not None

    def required_action(self, turn_id: str) -> dict[str, Any]:
        """Its entry in the session's `required_actions`."""
        call = self.script
        if call.server_label is not None:
            return {"type": "mcp_approval_request", "request_id": self.call_id,
                    "turn_id": turn_id,
                    "request": {"type": "mcp_tool_call", "server_label": call.server_label,
                                "message": f"Allow {call.server_label} to run {call.name}?",
                                "name": call.name, "arguments": call.arguments}}
        return {"type": "function_call", "call_id": self.call_id, "turn_id": turn_id,
                "name": call.name, "arguments": call.arguments}

    def item(self, turn_id: str, status: str) -> dict[str, Any]:
        """The call as a turn item (`function_call` or `mcp_call`)."""
        call = self.script
        if call.server_label is not None:
            answer = self.answer or {}
            decision = (answer.get("response") or {}).get("decision")
            return {"type": "mcp_call", "id": self.item_id, "name": call.name,
                    "arguments": call.arguments, "server_label": call.server_label,
                    "status": status, "turn_id": turn_id,
                    "output": "ok" if decision == "approve" else None,
                    "error": f"{decision} by the application" if decision not in (
                        None, "approve") else None}
        return {"type": "function_call", "id": self.item_id, "call_id": self.call_id,
                "name": call.name, "arguments": call.arguments, "status": status,
                "turn_id": turn_id}


@dataclass(slots=True)
class TurnRecord:
    """One turn of a session: started by a user message, it asks its calls, then answers."""

    id: str
    session_id: str
    agent_id: str
    created_at: float
    script: TurnScript
    status: str = "queued"
    started_at: float | None = None
    completed_at: float | None = None
    error: dict[str, str] | None = None
    calls: list[PendingCall] = field(default_factory=list)
    asked: bool = False  # whether its calls were asked (requires_action was reached)
    outputs: int = 0  # output items so far, for output_index

    @property
    def waiting(self) -> list[PendingCall]:
        """Its calls that still wait for an answer, while the turn waits for them."""
        if self.status != "waiting":
            return []
        return [call for call in self.calls if call.answer is None]

    def render(self) -> dict[str, Any]:
        """The `Turn` object."""
        over = self.status in ("completed", "failed", "cancelled")
        return {"id": self.id, "object": "agent.session.turn", "agent_id": self.agent_id,
                "session_id": self.session_id, "created_at": _epoch(self.created_at),
                "started_at": _epoch(self.started_at), "completed_at": _epoch(self.completed_at),
                "status": self.status, "subagent_id": None, "error": self.error,
                "usage": usage(1) if over else None}


@dataclass(slots=True)
class SessionRecord:
    """A session: its agent's settings, its scripted turns and where it is in them."""

    id: str
    agent: dict[str, Any]  # the agent snapshot the session shows
    environment: dict[str, Any]
    metadata: dict[str, str]
    created_at: float
    script: tuple[TurnScript, ...]
    status: str = "idle"
    last_active_at: float = 0.0
    error: str | None = None
    turns: list[TurnRecord] = field(default_factory=list)
    next_script: int = 0  # the next scripted turn to start
    phase_since: float = 0.0  # when the model began thinking (status in_progress)
    user_at: float | None = None  # when the simulated user starts the next scripted turn
    extra: dict[str, Any] = field(default_factory=dict)  # vault_ids, prompt_cache_options, review
    spend_limit: int | None = None  # spend_control.limit, USD cents; None: unlimited
    spent_cents: int = 0  # one cent a model step: enough to reach a small limit in a test

    @property
    def over_budget(self) -> bool:
        """Whether the session has spent its limit (its next model step pauses it)."""
        return self.spend_limit is not None and self.spent_cents >= self.spend_limit

    @property
    def turn(self) -> TurnRecord | None:
        """The latest turn, if any."""
        return self.turns[-1] if self.turns else None

    def turn_by_id(self, turn_id: str) -> TurnRecord | None:
        """One of the session's turns."""
        return next((turn for turn in self.turns if turn.id == turn_id), None)

    def required_actions(self) -> list[dict[str, Any]]:
        """What the session waits for: the unanswered calls of its waiting turn."""
        turn = self.turn
        if turn is None or self.status != "requires_action":
            return []
        return [call.required_action(turn.id) for call in turn.waiting]

    def render(self) -> dict[str, Any]:
        """The `AgentSession` object."""
        taken = sum(1 for turn in self.turns if turn.status != "queued")
        shown: dict[str, Any] = {
            "id": self.id, "object": "agent.session", "agent": dict(self.agent),
            "created_at": _epoch(self.created_at), "environment": dict(self.environment),
            "error": self.error, "last_active_at": _epoch(self.last_active_at),
            "metadata": dict(self.metadata), "required_actions": self.required_actions(),
            "status": self.status, "usage": usage(taken) if taken else None,
            "spend_control": {"consumed": self.spent_cents, "limit": self.spend_limit},
            "vault_ids": list(self.extra.get("vault_ids") or []),
            "prompt_cache_options": self.extra.get("prompt_cache_options"),
        }
        if self.extra.get("review") == "auto_review":
            shown["review"] = "auto_review"
        return shown

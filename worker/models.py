"""Frozen wire values, parsed once at the client edge: Run, ToolCall, Round, ToolOutput."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

import anyio

__all__ = ["Round", "Run", "RunStatus", "ToolCall", "ToolOutput"]


class RunStatus(enum.StrEnum):
    """A run's status as the API spells it."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # a status this version does not know yet: keep watching, do nothing

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @classmethod
    def parse(cls, value: object) -> RunStatus:
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN


_TERMINAL = frozenset(
    {RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.COMPLETED, RunStatus.INCOMPLETE,
     RunStatus.EXPIRED}
)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model asked for; ``arguments`` is the model's raw JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Run:
    """The fields of a RunObject that the worker acts on."""

    id: str
    thread_id: str
    assistant_id: str
    status: RunStatus
    expires_at: int | None
    required_action_type: str | None
    tool_calls: tuple[ToolCall, ...]
    # The API's `openai-poll-after-ms` hint that came with this answer, if any.
    poll_after_ms: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        """Parse a RunObject; unknown fields are ignored and null fields tolerated."""
        action = data.get("required_action") or {}
        calls_json = (action.get("submit_tool_outputs") or {}).get("tool_calls") or []
        calls = tuple(
            ToolCall(
                id=str(call["id"]),
                name=str((call.get("function") or {}).get("name", "")),
                arguments=str((call.get("function") or {}).get("arguments", "")),
            )
            for call in calls_json
            if call.get("type", "function") == "function" and "id" in call
        )
        expires_at = data.get("expires_at")
        return cls(
            id=str(data["id"]),
            thread_id=str(data["thread_id"]),
            assistant_id=str(data.get("assistant_id") or ""),
            status=RunStatus.parse(data.get("status")),
            expires_at=int(expires_at) if isinstance(expires_at, int | float) else None,
            required_action_type=action.get("type"),
            tool_calls=calls,
        )

    @property
    def wants_tool_outputs(self) -> bool:
        """True when the run waits for our outputs: requires_action of the submit kind."""
        return (
            self.status is RunStatus.REQUIRES_ACTION
            and self.required_action_type == "submit_tool_outputs"
            and bool(self.tool_calls)
        )


@dataclass(frozen=True, slots=True)
class Round:
    """One requires_action turn of a run: the tool calls to answer in a single submission."""

    thread_id: str
    run_id: str
    assistant_id: str
    expires_at: int | None
    tool_calls: tuple[ToolCall, ...]
    detected_at: float  # anyio clock, for detection-to-submit latency

    @property
    def key(self) -> tuple[str, frozenset[str]]:
        """Identity of the round: the run and the set of its tool call ids."""
        return (self.run_id, frozenset(call.id for call in self.tool_calls))

    def expiry(self) -> float | None:
        """When the run expires, on the anyio clock (``expires_at`` is epoch seconds)."""
        if self.expires_at is None:
            return None
        return anyio.current_time() + (self.expires_at - time.time())

    @classmethod
    def from_run(cls, run: Run, detected_at: float) -> Round:
        return cls(
            thread_id=run.thread_id,
            run_id=run.id,
            assistant_id=run.assistant_id,
            expires_at=run.expires_at,
            tool_calls=run.tool_calls,
            detected_at=detected_at,
        )


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """The answer to one tool call, plus what the worker observed while producing it."""

    tool_call_id: str
    output: str
    tool: str
    outcome: str  # ok, error, timeout, invalid_arguments, unknown_tool
    duration_s: float

    def to_json(self) -> dict[str, str]:
        return {"tool_call_id": self.tool_call_id, "output": self.output}

"""Frozen wire values, parsed once at the client edge: Run, ToolCall, Round, ToolOutput."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio

from worker.ids import check_id

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "APPROVAL_ACTION",
    "ApprovalDecision",
    "CallOutcome",
    "Malformed",
    "McpCall",
    "Round",
    "Run",
    "RunStatus",
    "SubmitOutcome",
    "ToolApproval",
    "ToolCall",
    "ToolOutput",
    "parse_metadata",
]


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

    @classmethod
    def from_json(cls, data: object) -> ToolCall | None:
        """Parse one item of ``tool_calls``; None for a call of another type (not ours).

        Raises:
            Malformed: the item is not a tool call.
        """
        call = _object(data, "tool call")
        if call.get("type", "function") != "function":
            return None
        function = _object(call.get("function"), "tool call's function")
        return cls(
            id=check_id(call.get("id"), "tool_call_id"),
            name=_string(function, "name", "tool call's function"),
            arguments=_string(function, "arguments", "tool call's function"),
        )


# Azure's agents service asks for approvals of MCP calls with required_action
# {"type": "submit_tool_approval", "submit_tool_approval": {"tool_calls": [RequiredMcpToolCall]}},
# each {"id", "type": "mcp", "name", "arguments", "server_label"} (azure-ai-agents,
# azure/ai/agents/models/_models.py: SubmitToolApprovalAction, SubmitToolApprovalDetails,
# RequiredMcpToolCall), and takes {"tool_approvals": [ToolApproval]} on submit_tool_outputs.
APPROVAL_ACTION = "submit_tool_approval"


@dataclass(frozen=True, slots=True)
class McpCall:
    """One MCP tool call that waits for an approval; ``arguments`` is the model's raw JSON text."""

    id: str
    name: str
    server_label: str
    arguments: str

    @classmethod
    def from_json(cls, data: object) -> McpCall | None:
        """Parse one item of ``submit_tool_approval.tool_calls``; None for a call of another type.

        Raises:
            Malformed: the item is not a tool call, or an MCP call misses a field.
        """
        call = _object(data, "approval tool call")
        if call.get("type") != "mcp":
            return None
        return cls(
            id=check_id(call.get("id"), "tool_call_id"),
            name=_string(call, "name", "MCP call"),
            server_label=_string(call, "server_label", "MCP call"),
            arguments=_string(call, "arguments", "MCP call"),
        )


def _approval_calls(action: dict[str, Any]) -> tuple[tuple[McpCall, ...], int]:
    """The MCP calls of a submit_tool_approval action, and how many calls were of another type."""
    details = _object(action.get(APPROVAL_ACTION) or {}, APPROVAL_ACTION)
    calls_json = details.get("tool_calls") or []
    if not isinstance(calls_json, list):
        raise Malformed(f"{APPROVAL_ACTION}'s tool_calls is {_kind(calls_json)}, not a list")
    parsed = [McpCall.from_json(call) for call in calls_json]
    calls = tuple(call for call in parsed if call is not None)
    return calls, len(parsed) - len(calls)


@dataclass(frozen=True, slots=True)
class Run:
    """The fields of a RunObject that the worker acts on."""

    id: str
    thread_id: str
    assistant_id: str
    status: RunStatus
    expires_at: float | None  # epoch seconds on the API's clock; some servers send floats
    required_action_type: str | None
    tool_calls: tuple[ToolCall, ...]
    created_at: float = 0.0
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)
    # The API's `openai-poll-after-ms` hint that came with this answer, if any.
    poll_after_ms: int | None = None
    # MCP calls waiting for approval (Azure), and how many approval calls were of another type.
    approval_calls: tuple[McpCall, ...] = ()
    other_approval_calls: int = 0

    @classmethod
    def from_json(cls, data: object) -> Run:
        """Parse a RunObject; unknown fields are ignored, optional ones may be null.

        Raises:
            Malformed: a field the worker needs is missing or of the wrong type (an
                ``InvalidId`` for an id no API would issue); the message names it.
        """
        run = _object(data, "run")
        action = _object(run.get("required_action") or {}, "required_action")
        outputs = _object(action.get("submit_tool_outputs") or {}, "submit_tool_outputs")
        calls_json = outputs.get("tool_calls") or []
        if not isinstance(calls_json, list):
            raise Malformed(f"tool_calls is {_kind(calls_json)}, not a list")
        calls = tuple(c for c in map(ToolCall.from_json, calls_json) if c is not None)
        approval_calls, other_approval_calls = _approval_calls(action)
        action_type = action.get("type")
        assistant_id = run.get("assistant_id")
        return cls(
            id=check_id(run.get("id"), "run id"),
            thread_id=check_id(run.get("thread_id"), "thread_id"),
            assistant_id=assistant_id if isinstance(assistant_id, str) else "",
            status=RunStatus.parse(_string(run, "status", "run")),
            expires_at=_expiry(run),
            required_action_type=action_type if isinstance(action_type, str) else None,
            tool_calls=calls,
            created_at=_time(run, "created_at") or 0.0,
            metadata=parse_metadata(run.get("metadata")),
            approval_calls=approval_calls,
            other_approval_calls=other_approval_calls,
        )

    @property
    def wants_tool_outputs(self) -> bool:
        """True when the run waits for our outputs: requires_action of the submit kind."""
        return (
            self.status is RunStatus.REQUIRES_ACTION
            and self.required_action_type == "submit_tool_outputs"
            and bool(self.tool_calls)
        )

    @property
    def wants_approvals(self) -> bool:
        """True when the run waits for tool approvals (MCP calls, on Azure)."""
        return (
            self.status is RunStatus.REQUIRES_ACTION
            and self.required_action_type == APPROVAL_ACTION
            and bool(self.approval_calls)
        )

    @property
    def call_ids(self) -> frozenset[str]:
        """The ids of the tool calls the run waits for (outputs or approvals; empty for none)."""
        return frozenset(call.id for call in self.tool_calls) | frozenset(
            call.id for call in self.approval_calls)

    def waits_for(self, round_: Round) -> bool:
        """True when the run still waits for every answer of this round (outputs or
        approvals), perhaps beside newer calls (a server listing a turn's calls one by one)."""
        return (self.wants_tool_outputs or self.wants_approvals) and (
            round_.call_ids <= self.call_ids)


@dataclass(frozen=True, slots=True)
class Round:
    """One requires_action turn of a run: the tool calls to answer in a single submission."""

    thread_id: str
    run_id: str
    assistant_id: str
    expires_at: float | None
    tool_calls: tuple[ToolCall, ...]
    detected_at: float  # anyio clock, for detection-to-submit latency
    # When the run expires on the anyio clock: expires_at read on the API's clock, not ours.
    expiry: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)
    # An approval round (Azure) asks for approvals of these MCP calls, and has no tool_calls.
    approval_calls: tuple[McpCall, ...] = ()

    @property
    def call_ids(self) -> frozenset[str]:
        """The ids of the round's tool calls; with the run id, the round's identity."""
        return frozenset(call.id for call in self.tool_calls) | frozenset(
            call.id for call in self.approval_calls)

    @property
    def key(self) -> tuple[str, str, frozenset[str]]:
        """Identity of the round: the thread, the run and the set of its tool call ids.

        The thread is part of it: servers that number runs and calls per thread or session
        (``turn_1``, ``call_1``) give two threads' rounds the same run and call ids.
        """
        return (self.thread_id, self.run_id, self.call_ids)

    @classmethod
    def from_run(cls, run: Run, detected_at: float, *, api_now: float | None = None) -> Round:
        """The run's pending round; ``api_now`` is the API's clock now, in epoch seconds.

        The run's ``expires_at`` is a time on the API's clock, so it is turned into a local
        deadline against the API's clock: a skewed local clock does not move it.
        """
        expiry = None
        if run.expires_at is not None:
            now = time.time() if api_now is None else api_now
            expiry = anyio.current_time() + (run.expires_at - now)
        return cls(
            thread_id=run.thread_id,
            run_id=run.id,
            assistant_id=run.assistant_id,
            expires_at=run.expires_at,
            tool_calls=run.tool_calls,
            detected_at=detected_at,
            expiry=expiry,
            metadata=run.metadata,
            approval_calls=run.approval_calls if run.wants_approvals else (),
        )


class Malformed(ValueError):
    """A field of an API answer is missing or of the wrong type; the client says BadAnswer."""


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} is {_kind(value)}, not an object")
    return value


def _string(data: dict[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise Malformed(f"{what}'s {name} is {_kind(value)}, not a string")
    return value


def _time(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    try:  # an int past any float (10**400) overflows here rather than being finite or not
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise Malformed(f"{name} is {_kind(value)}, not a number of seconds")
        return float(value)
    except OverflowError:
        raise Malformed(f"{name} is too large to be a number of seconds") from None


def _expiry(run: dict[str, Any]) -> float | None:
    # Some compatible servers write 0 (or a negative) for "no expiry", next to those writing
    # null: read as a time, it would settle every round as expired before any handler ran.
    value = _time(run, "expires_at")
    return value if value is not None and value > 0 else None


def parse_metadata(value: object) -> Mapping[str, str]:
    """A ``metadata`` object of the API as string pairs; anything else is left out."""
    # Metadata is the application's, up to 16 short string pairs; keep only what has that shape.
    if not isinstance(value, dict):
        return {}
    return MappingProxyType(
        {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    )


class CallOutcome(enum.StrEnum):
    """What became of one tool call; the closed label set of ``toolworker_tool_calls_total``."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    INVALID_ARGUMENTS = "invalid_arguments"
    UNKNOWN_TOOL = "unknown_tool"
    NOT_RUN = "not_run"  # too little time left before the run expires to run the handler


class ApprovalDecision(enum.StrEnum):
    """What became of an MCP call waiting for approval; ``toolworker_tool_approvals``' labels."""

    APPROVE = "approve"
    DENY = "deny"
    LEAVE = "leave"  # left for a person (or another program) to answer


class SubmitOutcome(enum.StrEnum):
    """What became of a round; the closed label set of ``toolworker_rounds_submitted_total``."""

    OK = "ok"  # our outputs were applied
    ALREADY_SUBMITTED = "already_submitted"  # someone else's were
    CANCELLED = "cancelled"  # the run was cancelled before it took outputs
    EXPIRED = "expired"  # the run expired before it took outputs
    REJECTED = "rejected"  # the run still waits, but refused these outputs
    FAILED = "failed"  # not delivered; the outputs are kept for another try

    @property
    def settled(self) -> bool:
        """True when nobody should dispatch or submit this round again."""
        return self is not SubmitOutcome.FAILED


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """The answer to one tool call, plus what the worker observed while producing it."""

    tool_call_id: str
    output: str
    tool: str
    outcome: CallOutcome
    duration_s: float

    def to_json(self, output_type: str | None = None) -> dict[str, str]:
        """The output as the API takes it; ``output_type`` is sent as its ``type`` when given."""
        body = {"tool_call_id": self.tool_call_id, "output": self.output}
        if output_type is not None:
            body["type"] = output_type
        return body

    def to_record(self) -> dict[str, object]:
        """Everything, for keeping the output until the run takes it (e.g. in Redis)."""
        return {"tool_call_id": self.tool_call_id, "output": self.output, "tool": self.tool,
                "outcome": self.outcome.value, "duration_s": self.duration_s}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> ToolOutput:
        """The inverse of ``to_record``."""
        return cls(str(data["tool_call_id"]), str(data["output"]), str(data["tool"]),
                   CallOutcome(data["outcome"]), float(data["duration_s"]))


@dataclass(frozen=True, slots=True)
class ToolApproval:
    """The answer to one MCP call waiting for approval (azure-ai-agents ``ToolApproval``)."""

    tool_call_id: str
    approve: bool

    def to_json(self) -> dict[str, str | bool]:
        """The approval as the API takes it."""
        return {"tool_call_id": self.tool_call_id, "approve": self.approve}

"""A run of the simulated API: its record, its settings and its RunObject JSON."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.simulator.quirks import timestamp

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.simulator.quirks import Quirk
    from worker.simulator.wire import ToolCallScript

__all__ = ["TERMINAL_STATUSES", "THINKING_STATUSES", "RunRecord", "run_settings"]

TERMINAL_STATUSES = frozenset({"cancelled", "failed", "completed", "incomplete", "expired"})
THINKING_STATUSES = frozenset({"queued", "in_progress"})

_RUN_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "max_prompt_tokens": None,
    "max_completion_tokens": None,
    "truncation_strategy": {"type": "auto", "last_messages": None},
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "response_format": "auto",
}


@dataclass(slots=True)
class RunRecord:
    """What the simulator knows of a run; times are precise epoch floats, the JSON floors them."""

    id: str
    thread_id: str
    assistant_id: str
    created_at: float
    expires_at: float
    settings: dict[str, Any]
    rounds: tuple[tuple[ToolCallScript, ...], ...]
    status: str = "queued"
    round_index: int = 0
    queued_since: float = 0.0
    tool_calls: tuple[dict[str, Any], ...] = ()
    started_at: float | None = None
    cancelled_at: float | None = None
    completed_at: float | None = None
    # Azure's Agent Service also asks for tool approvals: another kind of required_action.
    # action_type is the run's (a test may force it); pending_action is the current round's.
    action_type: str = "submit_tool_outputs"
    pending_action: str = "submit_tool_outputs"
    # (round index, tool name, output) of every accepted output: the final answer lists them.
    outputs: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """Whether the run is over."""
        return self.status in TERMINAL_STATUSES

    def render(self, quirks: frozenset[Quirk] = frozenset()) -> dict[str, Any]:
        """The RunObject JSON, every field of the spec present, as the `quirks` server shows it."""

        def epoch(moment: float | None) -> int | float | None:
            return None if moment is None else timestamp(moment, quirks)

        # The API clears expires_at once a run is over, except on the run that expired.
        shows_expiry = not (self.terminal and self.status != "expired")
        return {
            "id": self.id,
            "object": "thread.run",
            "created_at": epoch(self.created_at),
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "status": self.status,
            "required_action": self._required_action(quirks),
            "last_error": None,
            "expires_at": epoch(self.expires_at)
            if shows_expiry and "null_expiry" not in quirks else None,
            "started_at": epoch(self.started_at),
            "cancelled_at": epoch(self.cancelled_at) if self.status == "cancelled" else None,
            "failed_at": None,
            "completed_at": epoch(self.completed_at),
            "incomplete_details": None,
            **self.settings,
            "usage": _usage(self.round_index + 1) if self.terminal else None,
        }

    def _required_action(self, quirks: frozenset[Quirk]) -> dict[str, Any] | None:
        if self.status != "requires_action":
            # round_index counts the accepted submissions.
            return {} if "empty_required_action" in quirks and self.round_index else None
        return {
            "type": self.pending_action,
            self.pending_action: {"tool_calls": [dict(call) for call in self.tool_calls]},
        }


def run_settings(
    params: Mapping[str, Any], assistant: Mapping[str, Any], metadata: dict[str, str]
) -> dict[str, Any]:
    """The model, instructions, tools and sampling settings of a run: its own, else the assistant's."""
    instructions = _pick("instructions", params, assistant) or ""
    if params.get("additional_instructions"):
        instructions = f"{instructions}\n{params['additional_instructions']}".strip()
    settings = {key: _pick(key, params, assistant) for key in _RUN_DEFAULTS}
    settings.update(
        model=_pick("model", params, assistant),
        instructions=instructions,
        tools=_pick("tools", params, assistant) or [],
        metadata=metadata,
    )
    # A run keeps its own copy: later changes to the assistant or the defaults do not reach it.
    return copy.deepcopy(settings)


def _pick(key: str, *sources: Mapping[str, Any]) -> Any:
    for source in sources:
        if source.get(key) is not None:
            return source[key]
    return _RUN_DEFAULTS.get(key)


def _usage(turns: int) -> dict[str, int]:
    return {"prompt_tokens": 100 * turns, "completion_tokens": 20 * turns,
            "total_tokens": 120 * turns}

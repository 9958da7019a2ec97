"""Scope: which runs and rounds this worker serves; the others are left to other deployments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from worker.rounds.approvals import AWAITING_APPROVAL

if TYPE_CHECKING:
    from collections.abc import Iterable

    from worker.config.settings import Settings
    from worker.models import Run
    from worker.observability.metrics import Metrics

__all__ = [
    "OTHER_ASSISTANT",
    "UNKNOWN_TOOL",
    "UNSUPPORTED_ACTION",
    "Scope",
    "active_run",
    "record_left",
    "unknown_policy",
]

log = structlog.get_logger("worker.rounds.poller")

# Reasons a run is left alone: labels of toolworker_runs_skipped_total.
OTHER_ASSISTANT = "other_assistant"
UNKNOWN_TOOL = "unknown_tool"
UNSUPPORTED_ACTION = "unsupported_action"

_LEAVING = {
    UNSUPPORTED_ACTION: "run waits for an action this worker does not take; leaving it alone",
    OTHER_ASSISTANT: "run is of an assistant this worker does not serve; leaving it alone",
    UNKNOWN_TOOL: "round calls a tool not registered here; leaving it to another deployment",
    AWAITING_APPROVAL: "run waits for a person to approve its tool calls; leaving it alone",
}


def active_run(runs: Iterable[Run]) -> Run | None:
    """The thread's active run among some of its runs, whatever order they were listed in.

    A thread has one active run at a time; should a server show two, the newest wins, and
    of two created in the same second the one that waits for us.
    """
    going = [run for run in runs if not run.status.is_terminal]
    if not going:
        return None
    return max(going, key=lambda run: (run.created_at, run.wants_tool_outputs, run.id))


def record_left(run: Run, reason: str, metrics: Metrics) -> None:
    """Count and log a run left to someone else (once per run: the caller remembers)."""
    metrics.runs_skipped.labels(reason).inc()
    log.info(_LEAVING[reason], run_id=run.id, reason=reason, action=run.required_action_type,
             assistant_id=run.assistant_id,
             # Names come from the API: ten of them, each cut, keep the line short.
             tools=sorted({c.name[:64] for c in run.tool_calls}
                          | {c.name[:64] for c in run.approval_calls})[:10])


def unknown_policy(settings: Settings) -> str:
    """``[tools] unknown`` as it applies: "error" unless set, or the worker follows every thread.

    A worker that discovers every thread of a project without naming its assistants (or, for
    sessions, the agents it lists) shares the project with other deployments, so a tool it
    does not have is another's.
    """
    if settings.tools.unknown is not None:
        return settings.tools.unknown
    named = settings.watch.assistants or settings.watch.agents
    return "leave" if settings.watch.discover and not named else "error"


@dataclass(frozen=True, slots=True)
class Scope:
    """The assistants whose runs this worker answers (all when empty), and its tools."""

    assistants: frozenset[str]
    tools: frozenset[str]
    leave_unknown: bool  # a round naming a tool not registered here is another deployment's

    @classmethod
    def from_settings(cls, settings: Settings, tools: Iterable[str]) -> Scope:
        return cls(frozenset(settings.watch.assistants), frozenset(tools),
                   unknown_policy(settings) == "leave")

    def facts(self) -> dict[str, object]:
        """What the start log line says of the scope."""
        return {"assistants": sorted(self.assistants) or "all",
                "unknown_tools": "leave" if self.leave_unknown else "error"}

    def leave_reason(self, run: Run) -> str | None:
        """Why the run is not ours to answer (a ``runs_skipped`` reason), or None."""
        if self.assistants and run.assistant_id not in self.assistants:
            return OTHER_ASSISTANT
        if self.leave_unknown and any(call.name not in self.tools for call in run.tool_calls):
            return UNKNOWN_TOOL
        return None

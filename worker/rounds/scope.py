"""Scope: which runs and rounds this worker serves; the others are left to other deployments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from worker.config.settings import Settings
    from worker.models import Run

__all__ = ["OTHER_ASSISTANT", "UNKNOWN_TOOL", "Scope", "unknown_policy"]

# Reasons a run is left alone: labels of toolworker_runs_skipped_total.
OTHER_ASSISTANT = "other_assistant"
UNKNOWN_TOOL = "unknown_tool"


def unknown_policy(settings: Settings) -> str:
    """``[tools] unknown`` as it applies: "error" unless set, or the worker follows every thread.

    A worker that discovers every thread of a project without naming its assistants shares
    the project with other deployments, so a tool it does not have is another's.
    """
    if settings.tools.unknown is not None:
        return settings.tools.unknown
    return "leave" if settings.watch.discover and not settings.watch.assistants else "error"


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

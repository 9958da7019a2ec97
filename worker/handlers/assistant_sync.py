"""Assistant sync: make an assistant's function tools match the registered handlers."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from worker.api.client import ApiClient
    from worker.handlers.registry import Registry

__all__ = ["ToolChange", "ToolsPlan", "plan_sync", "printable", "sync_assistant"]


@dataclass(frozen=True, slots=True)
class ToolChange:
    """One function tool to add, change or remove; ``before``/``after`` are its definitions."""

    kind: Literal["add", "change", "remove"]
    name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ToolsPlan:
    """How an assistant's ``tools`` differ from the registry, and what they become."""

    assistant_id: str
    assistant_name: str | None
    changes: tuple[ToolChange, ...]
    unchanged: tuple[str, ...]
    tools: tuple[dict[str, Any], ...]  # the whole array after the sync, other tools in place

    @property
    def in_sync(self) -> bool:
        return not self.changes

    def describe(self) -> list[str]:
        """A readable diff: a summary line, then one line per tool, changed ones with a diff."""
        counts = {kind: sum(c.kind == kind for c in self.changes)
                  for kind in ("add", "change", "remove")}
        title = self.assistant_id + (f" ({self.assistant_name})" if self.assistant_name else "")
        lines = [(f"assistant {title}: {counts['add']} to add, {counts['change']} to change, "
                  f"{counts['remove']} to remove, {len(self.unchanged)} unchanged")]
        for change in self.changes:
            if change.kind == "add":
                lines.append(f"  + {change.name}")
            elif change.kind == "remove":
                lines.append(f"  - {change.name}")
            else:
                lines.append(f"  ~ {change.name} ({', '.join(_changed_fields(change))})")
                lines += [f"      {line}" for line in _unified(change)]
        return [printable(line) for line in lines]


def printable(text: str) -> str:
    """``text`` safe for a terminal: names and descriptions come from the API, and an escape
    sequence in one (ESC, bidi overrides...) must show as text, not act on the terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def plan_sync(assistant: dict[str, Any], registry: Registry) -> ToolsPlan:
    """Compare the assistant's function tools with the registry's, by name."""
    wanted = {spec.name: spec.to_openai() for spec in registry}
    tools: list[dict[str, Any]] = []
    changes: list[ToolChange] = []
    unchanged: list[str] = []
    seen: set[str] = set()
    for item in assistant.get("tools") or []:
        if not isinstance(item, dict) or item.get("type") != "function":
            tools.append(item)  # code_interpreter, file_search: not ours, kept where they are
            continue
        function = item.get("function") or {}
        name = str(function.get("name"))
        if name in wanted and name not in seen:
            seen.add(name)
            tools.append(wanted[name])
            after = wanted[name]["function"]
            if _normalized(function) == _normalized(after):
                unchanged.append(name)
            else:
                changes.append(ToolChange("change", name, function, after))
        else:
            changes.append(ToolChange("remove", name, function, None))
    for name, definition in wanted.items():
        if name not in seen:
            tools.append(definition)
            changes.append(ToolChange("add", name, None, definition["function"]))
    return ToolsPlan(
        assistant_id=str(assistant.get("id")),
        assistant_name=assistant.get("name"),
        changes=tuple(changes),
        unchanged=tuple(unchanged),
        tools=tuple(tools),
    )


async def sync_assistant(
    client: ApiClient, assistant_id: str, registry: Registry, *, dry_run: bool = False
) -> ToolsPlan:
    """Retrieve the assistant and, unless ``dry_run`` or already in sync, update its tools.

    Raises:
        ApiError: the assistant cannot be read or updated (``NotFound``: no such assistant).
    """
    plan = plan_sync(await client.retrieve_assistant(assistant_id), registry)
    if not plan.in_sync and not dry_run:
        await client.modify_assistant(assistant_id, {"tools": list(plan.tools)})
    return plan


def _normalized(function: dict[str, Any]) -> dict[str, Any]:
    # The API shows "strict": false and an empty description where none was sent.
    return {
        "name": function.get("name"),
        "description": function.get("description") or "",
        "parameters": function.get("parameters") or {},
        "strict": bool(function.get("strict")),
    }


def _changed_fields(change: ToolChange) -> list[str]:
    before = _normalized(change.before or {})
    after = _normalized(change.after or {})
    return [key for key in after if before[key] != after[key]]


def _unified(change: ToolChange) -> list[str]:
    def text(function: dict[str, Any] | None) -> list[str]:
        return json.dumps(_normalized(function or {}), indent=2, sort_keys=True).splitlines()

    return list(difflib.unified_diff(
        text(change.before), text(change.after),
        fromfile=f"{change.name} (assistant)", tofile=f"{change.name} (registered)",
        lineterm="", n=2,
    ))

"""Docstrings: a handler's summary and its Google-style ``Args:`` descriptions."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

__all__ = ["Docstring", "parse_docstring"]

# Napoleon's names for the parameters section; the first line of any other section ends it.
_ARGS_HEADERS = frozenset({"args", "arguments", "parameters", "params", "keyword args",
                           "keyword arguments", "other parameters"})
_SECTION = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
# "name: text", "name (int): text", "*args: text"
_ENTRY = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(?:\([^)]*\))?\s*:(?P<text>.*)$")


@dataclass(frozen=True, slots=True)
class Docstring:
    """What a docstring tells the model: the first paragraph, and a description per parameter."""

    summary: str = ""
    params: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> Docstring:
    """Read the first paragraph and the ``Args:`` section; lines of a paragraph are joined."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    for index, line in enumerate(lines):
        header = _SECTION.match(line)
        if header and header.group(1).strip().lower() in _ARGS_HEADERS:
            params.update(_read_args(lines[index + 1 :], _indent(line)))
    return Docstring(" ".join(summary), params)


def _read_args(lines: list[str], header_indent: int) -> dict[str, str]:
    """The entries of one section: each starts at the section's indentation; deeper lines continue it."""
    params: dict[str, list[str]] = {}
    entry_indent: int | None = None
    current: list[str] | None = None
    for line in lines:
        if not line.strip():
            continue
        indent = _indent(line)
        if indent <= header_indent:
            break  # the next section, or text after the section
        if entry_indent is None:
            entry_indent = indent
        match = _ENTRY.match(line.strip()) if indent == entry_indent else None
        if match:
            current = params.setdefault(match.group("name"), [])
            current.append(match.group("text").strip())
        elif current is not None and indent > entry_indent:
            current.append(line.strip())
    return {name: " ".join(part for part in text if part) for name, text in params.items()}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())

"""A handler module that imports fine but whose tool takes a Callable: refused at @tool."""

from __future__ import annotations

from collections.abc import Callable

from worker import tool


@tool
def apply(fn: Callable[[int], int], x: int) -> int:
    """Apply a function the model cannot send."""
    return fn(x)

"""A handler whose parameters have no strict-mode schema."""

from __future__ import annotations

from worker import tool

__all__ = ["tune"]


@tool
def tune(options: dict[str, int]) -> str:
    """Tune with any named numbers."""
    return ", ".join(sorted(options))

"""Calling a tool as the worker does and reading what the model would read."""

from __future__ import annotations

import json
from typing import Any

from worker.testing import call_tool

__all__ = ["error_text", "ok_json"]


async def ok_json(fn: Any, arguments: str | dict[str, Any]) -> Any:
    """Call a tool that must succeed and decode the JSON text the model would read."""
    result = await call_tool(fn, arguments)
    assert result.outcome == "ok", result.output
    return json.loads(result.output)


async def error_text(fn: Any, arguments: str | dict[str, Any], outcome: str = "error") -> str:
    """Call a tool that must fail with ``outcome`` and return the text the model would read."""
    result = await call_tool(fn, arguments)
    assert result.outcome == outcome, result.output
    return result.output

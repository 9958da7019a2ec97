"""Handlers that count their calls and report their start, to prove outputs are computed once."""

from __future__ import annotations

import time
from collections import Counter

import anyio

from worker import ToolContext, tool

__all__ = ["CANCELLED", "COUNTS", "STARTED", "counted", "reset", "slow"]

# Calls of `counted` by key, across every worker of the test.
COUNTS: Counter[str] = Counter()
# run_id -> time.monotonic() when `slow` started, and when it was cancelled.
STARTED: dict[str, float] = {}
CANCELLED: dict[str, float] = {}


def reset() -> None:
    """Forget every call (module state outlives a test)."""
    COUNTS.clear()
    STARTED.clear()
    CANCELLED.clear()


@tool
async def counted(key: str) -> str:
    """Count one call under ``key``."""
    COUNTS[key] += 1
    return f"computed {key}"


@tool(timeout=60.0)
async def slow(ctx: ToolContext, seconds: float) -> str:
    """Sleep for a long time, recording when it starts and whether it was cancelled."""
    STARTED[ctx.run_id] = time.monotonic()
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        CANCELLED[ctx.run_id] = time.monotonic()
        raise
    return "slept"

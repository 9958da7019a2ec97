"""Handlers that record what happened, for dispatch and end-to-end tests."""

from __future__ import annotations

import threading
import time
from typing import Literal

import anyio

from worker import ToolContext, ToolError, tool

__all__ = ["CALLS", "add", "blocking_sleep", "boom", "describe", "fail_politely", "hang",
           "nap", "not_json", "repeat", "weather"]

# (tool, tool_call_id, started, ended) on the time.monotonic() clock, across threads.
CALLS: list[tuple[str, str, float, float]] = []
_lock = threading.Lock()


def _record(name: str, ctx: ToolContext, started: float) -> None:
    with _lock:
        CALLS.append((name, ctx.tool_call_id, started, time.monotonic()))


@tool
async def nap(ctx: ToolContext, seconds: float) -> str:
    """Sleep asynchronously, then say so."""
    started = time.monotonic()
    await anyio.sleep(seconds)
    _record("nap", ctx, started)
    return f"napped {seconds}"


@tool(name="blocking_sleep", timeout=10.0, max_concurrency=8)
def blocking_sleep(ctx: ToolContext, seconds: float) -> dict[str, float]:
    """Sleep in a worker thread, as a blocking handler would."""
    started = time.monotonic()
    time.sleep(seconds)
    _record("blocking_sleep", ctx, started)
    return {"slept": seconds}


@tool
def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


@tool
async def weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, object]:
    """Report a fixed weather."""
    return {"city": city, "temperature": 21 if unit == "c" else 70, "unit": unit}


@tool
async def boom() -> str:
    """Always fail with an exception."""
    raise RuntimeError("the database is on fire")


@tool
async def fail_politely(city: str) -> str:
    """Refuse with a message meant for the model."""
    raise ToolError(f"city {city!r} not found; pass a city name like 'Paris'")


@tool(timeout=0.2)
async def hang() -> str:
    """Never finish on its own."""
    await anyio.sleep_forever()
    return "unreachable"


@tool
async def not_json() -> object:
    """Return a value JSON cannot encode."""
    return object()


@tool
def describe(ctx: ToolContext) -> dict[str, str]:
    """Tell which call this is, from a worker thread."""
    return {"thread_id": ctx.thread_id, "run_id": ctx.run_id, "tool_call_id": ctx.tool_call_id}


@tool
async def repeat(text: str, times: int) -> str:
    """Repeat a text, for outputs of any size."""
    return text * times

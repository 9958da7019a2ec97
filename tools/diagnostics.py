"""Tools that exercise the worker itself: round trips, timeouts, the context in threads."""

from __future__ import annotations

from typing import Annotated

import anyio
from pydantic import Field

from worker import ToolContext, tool

__all__ = ["describe_call", "echo", "sleep"]


@tool
def echo(text: str) -> str:
    """Return the text unchanged (to test that tool calls reach the worker and back)."""
    return text


@tool
async def sleep(
    seconds: Annotated[
        float, Field(ge=0, le=60, allow_inf_nan=False, description="how long to wait, 0 to 60")
    ],
) -> dict[str, float]:
    """Wait some seconds, then report it (to test concurrency and timeouts)."""
    await anyio.sleep(seconds)
    return {"slept_s": seconds}


@tool
def describe_call(ctx: ToolContext) -> dict[str, str | float]:
    """Report the ids of this tool call and the seconds left before its deadline."""
    ctx.log.info("describing the call")
    return {
        "thread_id": ctx.thread_id,
        "run_id": ctx.run_id,
        "tool_call_id": ctx.tool_call_id,
        "assistant_id": ctx.assistant_id,
        "seconds_left": round(ctx.seconds_left(), 1),
    }

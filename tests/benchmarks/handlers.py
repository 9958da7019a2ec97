"""The benchmark's tools: registered with ``@tool`` for tool-worker, called directly by baselines."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from worker import tool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["DEFAULT_TIMEOUT_S", "HANDLERS", "TIMEOUTS_S", "TOOL_TIMEOUT_S", "noop", "work"]

# Every `work` call is cut off after this long; a faulty scenario's slow calls overrun it.
TOOL_TIMEOUT_S = 0.5
# tool-worker's `[tools] default_timeout_s`, which bounds `noop`.
DEFAULT_TIMEOUT_S = 60.0


@tool(timeout=TOOL_TIMEOUT_S)
async def work(ms: int, fail: bool = False) -> str:
    """Sleep asynchronously for ``ms`` milliseconds, then raise if ``fail``."""
    await asyncio.sleep(ms / 1000)
    if fail:
        raise RuntimeError(f"failed on purpose after {ms} ms")
    return f"worked {ms} ms"


@tool
async def noop() -> str:
    """Do nothing: measures the per-call overhead of the system around it."""
    return "ok"


HANDLERS: dict[str, Callable[..., Awaitable[object]]] = {"work": work, "noop": noop}
TIMEOUTS_S = {"work": TOOL_TIMEOUT_S, "noop": DEFAULT_TIMEOUT_S}

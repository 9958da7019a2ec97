"""How both baselines call a tool: the handler itself, its timeout, errors as output strings."""

from __future__ import annotations

import asyncio
import json

from tests.benchmarks.handlers import DEFAULT_TIMEOUT_S, HANDLERS, TIMEOUTS_S

__all__ = ["answer"]


async def answer(name: str, arguments: str) -> str:
    """Run one tool call; every failure becomes a short output, as tool-worker does."""
    handler = HANDLERS.get(name)
    if handler is None:
        return f"Error: unknown tool {name!r}."
    timeout_s = TIMEOUTS_S.get(name, DEFAULT_TIMEOUT_S)
    try:
        kwargs = json.loads(arguments or "{}")
        async with asyncio.timeout(timeout_s):
            result = await handler(**kwargs)
    except TimeoutError:
        return f"Error: the tool {name!r} timed out after {timeout_s:.1f} s."
    except Exception as exc:  # noqa: BLE001 - any handler failure is an output for the model
        return f"Error: the tool {name!r} failed: {type(exc).__name__}: {exc}"[:500]
    return result if isinstance(result, str) else json.dumps(result)

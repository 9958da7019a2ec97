"""The README's handler examples, checked by ``mypy --strict`` (not collected by pytest)."""

from __future__ import annotations

from typing import Literal

from worker import ToolContext, ToolError, tool
from worker.testing import RunResult, ToolWorker, call_tool, fake_context, run_tools

__all__ = ["crunch", "get_weather", "lookup", "private_lookup", "tested", "uses_them"]


@tool
async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, object]:
    """Current weather for a city.

    Args:
        city: A city name, like 'Paris'.
        unit: Degrees Celsius or Fahrenheit.
    """
    if not city:
        raise ToolError("pass a city name like 'Paris'")
    return {"city": city, "temperature": 21, "unit": unit}


@tool(name="lookup", timeout=5.0, max_concurrency=4)
def lookup(ctx: ToolContext, key: str) -> str:
    """Look a key up; sync handlers run in a worker thread."""
    ctx.log.info("looking up", key=key)
    return key.upper()


@tool(max_output_chars=4_000, expose_errors=False)
async def private_lookup(key: str) -> str:
    """Look a key up in a store whose errors must not reach the model."""
    return key


@tool(process=True, timeout=30.0)
def crunch(n: int) -> int:
    """Sum the squares below n, in a worker process (CPU-bound, holds the GIL)."""
    return sum(i * i for i in range(n))


async def uses_them(ctx: ToolContext) -> str:
    """Decorated handlers keep their signatures for type checkers."""
    weather: dict[str, object] = await get_weather("Oslo", unit="f")
    found: str = lookup(ctx, "k")
    secret: str = await private_lookup("k")
    total: int = crunch(10)
    return f"{weather['city']} {found} {secret} {total}"


async def tested(tool_worker: ToolWorker) -> list[list[str]]:
    """The testing helpers, as the README uses them."""
    output = await call_tool(get_weather, {"city": "Oslo"}, ctx=fake_context(timeout_s=5))
    assert output.outcome == "ok"
    result: RunResult = await run_tools([get_weather], [[("get_weather", {"city": "Oslo"})]])
    again = await tool_worker.run([[("lookup", '{"key": "k"}')]])
    return result.outputs + again.outputs

"""The README's handler examples, checked by ``mypy --strict`` (not collected by pytest)."""

from __future__ import annotations

from typing import Literal

from worker import ToolContext, ToolError, tool

__all__ = ["get_weather", "lookup", "uses_them"]


@tool
async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, object]:
    """Current weather for a city."""
    if not city:
        raise ToolError("pass a city name like 'Paris'")
    return {"city": city, "temperature": 21, "unit": unit}


@tool(name="lookup", timeout=5.0, max_concurrency=4)
def lookup(ctx: ToolContext, key: str) -> str:
    """Look a key up; sync handlers run in a worker thread."""
    ctx.log.info("looking up", key=key)
    return key.upper()


async def uses_them(ctx: ToolContext) -> str:
    """Decorated handlers keep their signatures for type checkers."""
    weather: dict[str, object] = await get_weather("Oslo", unit="f")
    found: str = lookup(ctx, "k")
    return f"{weather['city']} {found}"

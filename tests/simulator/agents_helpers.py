"""Helpers of the Agents API tests: strict validation against the SDK's models, raw SSE reading."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from openai import BaseModel
from pydantic import TypeAdapter

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    import aiohttp

__all__ = ["AGENTS_HEADERS", "raw_events", "strict"]

AGENTS_HEADERS = {"Authorization": "Bearer sk-sim", "OpenAI-Beta": "agents=v1"}


def strict(model_type: Any, data: object) -> Any:
    """`data` validated as `model_type`, refusing a missing field (pydantic) or an extra one.

    The SDK's models accept unknown fields silently (extra="allow"); here each one is an error,
    at any depth, so the simulator's JSON matches the types field for field.
    """
    value = _adapter(model_type).validate_python(data)
    _no_extras(value, model_type.__name__ if hasattr(model_type, "__name__") else "value")
    if isinstance(data, dict) and isinstance(value, BaseModel) and "type" in data:
        # A discriminated union takes an unknown type as its first member; that is not a match.
        assert getattr(value, "type", None) == data["type"], (data["type"], type(value))
    return value


@functools.cache
def _adapter(model_type: Any) -> TypeAdapter[Any]:
    # Building the adapter of a large union (AgentSessionEvent) takes a while: once is enough.
    return TypeAdapter(model_type)


def _no_extras(value: object, path: str) -> None:
    if isinstance(value, BaseModel):
        extra = value.__pydantic_extra__ or {}
        assert not extra, f"{path}: fields the SDK's type does not have: {sorted(extra)}"
        for name in type(value).model_fields:
            _no_extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_extras(item, f"{path}[{index}]")


async def raw_events(
    session: aiohttp.ClientSession, url: str
) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON of each `data:` frame of an SSE stream, checking the framing the SDK needs."""
    async with session.get(url, headers={**AGENTS_HEADERS, "Accept": "text/event-stream"}) as reply:
        assert reply.status == 200, await reply.text()
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        async for raw_line in reply.content:
            line = raw_line.decode().rstrip("\n")
            assert not line.startswith(("event:", "id:")), line  # see agents_stream's docstring
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line.removeprefix("data: "))

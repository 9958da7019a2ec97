"""Server-sent events of a streamed run: parsed within bounds, reduced to the run they show.

A streamed ``submit_tool_outputs`` answers with events (``thread.run.queued``,
``thread.run.in_progress``, message events, ...) that end with ``thread.run.requires_action``
(the next round) or a terminal ``thread.run.<status>``, then ``event: done`` /
``data: [DONE]``. The worker only needs the last run object before that end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.errors import BadAnswer

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["RUN_ENDS", "Event", "read_events"]

# The run events after which a stream has nothing more the worker needs.
RUN_ENDS = frozenset(
    f"thread.run.{status}"
    for status in ("requires_action", "completed", "failed", "cancelled", "expired", "incomplete")
)


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: its name (``message`` when unnamed) and its data."""

    name: str
    data: str


async def read_events(
    chunks: AsyncIterable[bytes], *, endpoint: str, max_event_bytes: int
) -> AsyncIterator[Event]:
    """The events of a ``text/event-stream`` body, as they arrive.

    Raises:
        BadAnswer: an event is larger than ``max_event_bytes`` (nothing that big is read).
    """
    buffer = b""
    async for chunk in chunks:
        data = chunk.replace(b"\r\n", b"\n")
        if buffer.endswith(b"\r") and data.startswith(b"\n"):  # a CRLF split across chunks
            buffer = buffer[:-1]
        buffer += data
        while (end := buffer.find(b"\n\n")) >= 0:
            block, buffer = buffer[:end], buffer[end + 2 :]
            event = _parse(block)
            if event is not None:
                yield event
        if len(buffer) > max_event_bytes:
            raise BadAnswer(endpoint, f"a streamed event is over {max_event_bytes} bytes")
    if buffer.strip():
        event = _parse(buffer)  # a last event without its blank line
        if event is not None:
            yield event


def _parse(block: bytes) -> Event | None:
    name, data = "message", []
    for raw in block.split(b"\n"):
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line or line.startswith(":"):
            continue  # a comment: servers send them to keep the connection open
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if not data and name == "message":
        return None
    return Event(name, "\n".join(data))

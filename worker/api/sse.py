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

__all__ = ["QUIET_END_S", "RUN_ENDS", "Event", "read_events"]

# A live stream that the server ends cleanly this soon after opening, with no status event,
# counts as broken (toolworker_streams_broken_total) and as a failure for the reconnect
# backoff: reopened at once every time, such a server took ten requests a second per session.
QUIET_END_S = 5.0

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

    Linear in the bytes received: each byte is searched for the end of its event once, and
    an event growing past ``max_event_bytes`` is refused as soon as it does, before any of
    it is parsed (a 16 MiB event used to cost seconds of CPU re-scanning its start).

    Raises:
        BadAnswer: an event is larger than ``max_event_bytes`` (nothing that big is read).
    """
    buffer = bytearray()
    async for chunk in chunks:
        data = chunk.replace(b"\r\n", b"\n")
        if buffer.endswith(b"\r") and data.startswith(b"\n"):  # a CRLF split across chunks
            del buffer[-1]
        searched = max(len(buffer) - 1, 0)  # a "\n" at the end may pair with this chunk's
        buffer += data
        start = 0
        while (end := buffer.find(b"\n\n", max(searched, start))) >= 0:
            event = _parse(bytes(buffer[start:end]))
            start = end + 2
            if event is not None:
                yield event
        del buffer[:start]
        if len(buffer) > max_event_bytes:
            raise BadAnswer(endpoint, f"a streamed event is over {max_event_bytes} bytes")
    if buffer.strip():
        event = _parse(bytes(buffer))  # a last event without its blank line
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

"""Reading the API's answers: bodies within bounds, JSON objects, error statuses as ApiError.

Everything here turns bytes and headers from the wire into the worker's own values or its
own exceptions, so that nothing the API sends can escape the client as anything else.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import aiohttp

from worker import ids
from worker.errors import (
    ApiConnectionError,
    ApiErrorKind,
    ApiStatusError,
    ApiTimeout,
    AuthError,
    BadAnswer,
    NotFound,
    RateLimited,
    RunNotActionable,
)
from worker.models import Run
from worker.observability.redaction import redact_text

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "ANSWERS",
    "Answer",
    "decode",
    "items",
    "parse_assistant",
    "parse_run",
    "poll_hint",
    "read_capped",
    "status_error",
    "translate_errors",
]


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: the JSON object, and the hint that came beside it."""

    data: dict[str, Any]
    # The API's `openai-poll-after-ms`: when it expects the answer to change, if it said.
    poll_after_ms: int | None = None


# Refusals that still show the API is reachable and takes the key.
ANSWERS = frozenset(
    {ApiErrorKind.NOT_FOUND, ApiErrorKind.RUN_NOT_ACTIONABLE, ApiErrorKind.CLIENT_ERROR}
)


def poll_hint(headers: Any) -> int | None:
    """The ``openai-poll-after-ms`` hint, when the API sent a sane one."""
    hint = str(headers.get("openai-poll-after-ms", ""))
    # isascii: "²".isdigit() is True, and int("²") a ValueError.
    plain = hint.isascii() and hint.isdigit() and len(hint) < 10
    return int(hint) if plain else None


async def read_capped(endpoint: str, response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, refused unread past ``cap`` bytes: a huge answer must not exhaust memory."""
    declared = response.content_length
    if declared is not None and declared > cap:
        raise BadAnswer(endpoint, f"the answer is {declared} bytes, over [api] "
                                  f"max_response_bytes = {cap}")
    # read(n) returns what has arrived so far, up to n: loop until the end or past the cap.
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await response.content.read(cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > cap:
        raise BadAnswer(endpoint, f"the answer is over [api] max_response_bytes = {cap}")
    return b"".join(chunks)


@contextmanager
def translate_errors(endpoint: str, timeout_s: float) -> Iterator[None]:
    """The one place where aiohttp's and asyncio's exceptions become ``ApiError``."""
    try:
        yield
    except TimeoutError as exc:
        raise ApiTimeout(endpoint, timeout_s) from exc
    except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
        raise ApiConnectionError(
            endpoint, f"TLS failed for {_where(exc)}: {_os_reason(exc)}", kind=ApiErrorKind.TLS
        ) from exc
    except aiohttp.ClientConnectorDNSError as exc:
        raise ApiConnectionError(
            endpoint, f"cannot resolve the host {_where(exc)}", kind=ApiErrorKind.DNS
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise ApiConnectionError(
            endpoint, f"cannot connect to {_where(exc)}: {_os_reason(exc)}"
        ) from exc
    except aiohttp.ClientError as exc:
        raise ApiConnectionError(endpoint, type(exc).__name__) from exc


def _where(exc: aiohttp.ClientConnectorError) -> str:
    return f"{exc.host}:{exc.port}"


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    return str(exc.os_error.strerror or exc.os_error)


def parse_run(
    endpoint: str, data: object, poll_after_ms: int | None = None, *, thread_id: str,
    run_id: str | None = None,
) -> Run:
    """The run in ``data``, which must be ``run_id`` (any run, when None) of ``thread_id``.

    Anything that does not parse, or is another run than the one asked about, is a
    ``BadAnswer``.
    """
    try:
        run = Run.from_json(data)
    except ValueError as exc:  # Malformed, or InvalidId for an id no API issues
        raise BadAnswer(endpoint, str(exc)) from None
    if run.thread_id != thread_id or run_id not in (None, run.id):
        # A gateway that mixes up answers (a cache keyed wrongly): acting on it would answer
        # another thread's round and leave this thread's watch waiting forever.
        raise BadAnswer(endpoint, f"it is run {run.id!r} of thread {run.thread_id!r}, not "
                                  f"{run_id or 'a run'!r} of thread {thread_id!r} as asked")
    return replace(run, poll_after_ms=poll_after_ms) if poll_after_ms is not None else run


def parse_assistant(endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` if it has the shape tool sync reads: an id, and tools a list of objects."""
    if not ids.is_valid_id(data.get("id")):
        raise BadAnswer(endpoint, f"the assistant's id is {str(data.get('id'))[:40]!r}")
    tools = data.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(item, dict) for item in tools):
        raise BadAnswer(endpoint, "the assistant's tools are not a list of objects")
    for item in tools:
        function = item.get("function")
        if item.get("type") == "function" and not (
            isinstance(function, dict) and isinstance(function.get("name"), str)
        ):
            raise BadAnswer(endpoint, "a function tool of the assistant has no function name")
    return data


def items(endpoint: str, data: dict[str, Any]) -> list[Any]:
    """The ``data`` list of a list answer."""
    items = data.get("data")
    if not isinstance(items, list):
        raise BadAnswer(endpoint, "a list answer without a 'data' list")
    return items


# How much of a body that is not JSON its error quotes, and how much of it is redacted first
# (a whole key, even one that starts at the end of the quote).
QUOTE_CHARS = 40
QUOTE_WINDOW = 4096


def decode(endpoint: str, payload: bytes) -> dict[str, Any]:
    """A JSON object from a body."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        # Redacted before it is cut: a key the body reflects, cut at the end of the quote,
        # would match neither the configured key nor (glued to a word) the key shape.
        start = redact_text(payload[:QUOTE_WINDOW].decode("utf-8", "replace"))[:QUOTE_CHARS]
        raise BadAnswer(endpoint, f"not JSON, it starts {start!r}") from None
    if not isinstance(data, dict):
        raise BadAnswer(endpoint, f"not a JSON object but a {type(data).__name__}")
    return data


def status_error(
    endpoint: str, response: aiohttp.ClientResponse, payload: bytes
) -> ApiStatusError:
    """The ApiStatusError an error status means, with the API's own message (redacted: an
    API that refuses a key may quote it)."""
    message, code = _error_fields(payload)
    message = redact_text(message)
    request_id = response.headers.get("x-request-id")
    status = response.status
    if status in (401, 403):
        return AuthError(status, endpoint, message, request_id=request_id, code=code)
    if status == 404:
        return NotFound(status, endpoint, message, request_id=request_id, code=code)
    if status == 429:
        return RateLimited(
            status, endpoint, message, request_id=request_id, code=code,
            retry_after_s=_retry_after_s(response.headers),
        )
    if status == 400 and endpoint == "submit_tool_outputs":
        return RunNotActionable(status, endpoint, message, request_id=request_id, code=code)
    return ApiStatusError(status, endpoint, message, request_id=request_id, code=code)


def _error_fields(payload: bytes) -> tuple[str, str | None]:
    try:
        error = json.loads(payload).get("error") or {}
        code = error.get("code")
        return str(error.get("message") or "no message")[:500], code if isinstance(code, str) else None
    except (ValueError, AttributeError, RecursionError):
        return payload[:200].decode("utf-8", "replace") or "no message", None


def _retry_after_s(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay_s = float(value) * scale
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
        if math.isfinite(delay_s):
            return max(delay_s, 0.0)
    return None

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

from .errors import (
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
from .models import Run

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "ANSWERS",
    "Answer",
    "decode",
    "items",
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
    return int(hint) if hint.isdigit() and len(hint) < 10 else None


async def read_capped(endpoint: str, response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, refused unread past ``cap`` bytes: a huge answer must not exhaust memory."""
    declared = response.content_length
    if declared is not None and declared > cap:
        raise BadAnswer(endpoint, f"the answer is {declared} bytes, over [api] "
                                  f"max_response_bytes = {cap}")
    payload = await response.content.read(cap + 1)
    if len(payload) > cap:
        raise BadAnswer(endpoint, f"the answer is over [api] max_response_bytes = {cap}")
    return payload


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


def parse_run(endpoint: str, data: object, poll_after_ms: int | None = None) -> Run:
    """A RunObject from an answer; anything that does not parse is a ``BadAnswer``."""
    try:
        run = Run.from_json(data)
    except ValueError as exc:  # Malformed, or InvalidId for an id no API issues
        raise BadAnswer(endpoint, str(exc)) from None
    return replace(run, poll_after_ms=poll_after_ms) if poll_after_ms is not None else run


def items(endpoint: str, data: dict[str, Any]) -> list[Any]:
    """The ``data`` list of a list answer."""
    items = data.get("data")
    if not isinstance(items, list):
        raise BadAnswer(endpoint, "a list answer without a 'data' list")
    return items


def decode(endpoint: str, payload: bytes) -> dict[str, Any]:
    """A JSON object from a body."""
    try:
        data = json.loads(payload)
    except ValueError:
        start = payload[:40].decode("utf-8", "replace")
        raise BadAnswer(endpoint, f"not JSON, it starts {start!r}") from None
    if not isinstance(data, dict):
        raise BadAnswer(endpoint, f"not a JSON object but a {type(data).__name__}")
    return data


def status_error(
    endpoint: str, response: aiohttp.ClientResponse, payload: bytes
) -> ApiStatusError:
    """The ApiStatusError an error status means, with the API's own message."""
    message, code = _error_fields(payload)
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
    except (ValueError, AttributeError):
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

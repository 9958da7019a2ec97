"""Helpers for the live deploy tests: free loopback ports, HTTP probes, waiting with deadlines."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["LOOPBACK", "free_port", "get", "wait_for"]

LOOPBACK = "127.0.0.1"
POLL_S = 0.25

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now, on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def get(url: str, *, timeout_s: float = 5) -> tuple[int, Any]:
    """(status, body) of a GET: JSON when it parses, else text; (0, error) when unreachable."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, repr(exc)
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


async def wait_for(check: Callable[[], Awaitable[T | None]], what: str, *,
                      timeout_s: float) -> T:
    """Call ``check`` until it returns something other than None; fail after ``timeout_s``.

    The failure names ``what``, so a red CI says what did not happen.
    """
    with anyio.move_on_after(timeout_s):
        while True:
            result = await check()
            if result is not None:
                return result
            await anyio.sleep(POLL_S)
    raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")

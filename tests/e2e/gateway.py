"""A hostile gateway: a reverse proxy on loopback in front of the simulator.

It passes requests through to the simulator, except that

- every answer about a *poisoned* thread is replaced by garbage, rotating through the
  ``GARBLES`` below (each one a ``BadAnswer`` for the client), and
- with ``skew_s``, every timestamp in the answers (``created_at``, ``expires_at``...) and the
  ``Date`` header are moved by that many seconds: an API whose clock is off from ours.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Self

import aiohttp
from aiohttp import web

from tests.conftest import ServedApp

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["GARBLES", "Gateway"]

# Headers passed on in each direction; Date is the gateway's own (skewed) one.
_UP = ("Authorization", "OpenAI-Beta", "Content-Type")
_DOWN = ("Content-Type", "openai-poll-after-ms", "x-request-id", "retry-after", "retry-after-ms")
HUGE_BYTES = 64 * 1024 + 1  # over the smallest [api] max_response_bytes, which the tests set


class Upstream:
    """What the simulator answered: the status, raw body, parsed JSON (or None), headers."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers
        try:
            self.json: Any = json.loads(body)
        except ValueError:
            self.json = None

    def runs(self) -> list[dict[str, Any]]:
        """The run objects in the answer (one, or a listing's), to be garbled in place."""
        data = self.json
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            return [item for item in data["data"] if isinstance(item, dict)]
        return [data] if isinstance(data, dict) and "status" in data else []


Garble = Callable[[web.Request, Upstream, "Gateway"], Awaitable[web.StreamResponse]]


def _raw(body: bytes, content_type: str = "application/json") -> web.Response:
    return web.Response(body=body, headers={"Content-Type": content_type})


def _field(mutate: Callable[[dict[str, Any]], None]) -> Garble:
    async def garble(request: web.Request, upstream: Upstream, gw: Gateway) -> web.StreamResponse:
        runs = upstream.runs()
        if not runs:  # nothing to garble in place: garbage of another kind
            return _raw(b"<html>502</html>", "text/html")
        for run in runs:
            mutate(run)
        return _raw(json.dumps(upstream.json).encode())

    return garble


async def _html(request: web.Request, upstream: Upstream, gw: Gateway) -> web.StreamResponse:
    return _raw(b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")


async def _truncated(request: web.Request, upstream: Upstream, gw: Gateway) -> web.StreamResponse:
    return _raw(upstream.body[: max(len(upstream.body) // 2, 1)])


async def _empty(request: web.Request, upstream: Upstream, gw: Gateway) -> web.StreamResponse:
    return _raw(b"")


async def _array(request: web.Request, upstream: Upstream, gw: Gateway) -> web.StreamResponse:
    return _raw(json.dumps([upstream.json]).encode())


async def _nested(request: web.Request, upstream: Upstream, gw: Gateway) -> web.StreamResponse:
    return _raw(b"[" * 20_000)


async def _huge(request: web.Request, upstream: Upstream, gw: Gateway) -> web.StreamResponse:
    return _raw(b" " * HUGE_BYTES)


async def _huge_chunked(request: web.Request, upstream: Upstream,
                        gw: Gateway) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for _ in range(HUGE_BYTES // 8192 + 2):
            await response.write(b" " * 8192)
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped reading at its cap and hung up
    return response


async def _someone_elses(request: web.Request, upstream: Upstream,
                         gw: Gateway) -> web.StreamResponse:
    """A valid run, but of a healthy thread: a gateway cache keyed wrongly."""
    other = gw.last_healthy_run
    if other is None:
        return await _html(request, upstream, gw)
    listing = isinstance(upstream.json, dict) and "data" in upstream.json
    return _raw(json.dumps({"object": "list", "data": [other]} if listing else other).encode())


def _set(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda run: run.update(fields)


def _arguments_object(run: dict[str, Any]) -> None:
    for call in ((run.get("required_action") or {}).get("submit_tool_outputs") or {}).get(
            "tool_calls") or []:
        call["function"]["arguments"] = {"a": 1}
    if not run.get("required_action"):
        run["id"] = 42  # nothing to garble in the calls: garble the id instead


GARBLES: dict[str, Garble] = {
    "html": _html,
    "truncated": _truncated,
    "empty": _empty,
    "array": _array,
    "nested": _nested,
    "huge": _huge,
    "huge chunked": _huge_chunked,
    "id an int": _field(_set(id=42)),
    "status a list": _field(_set(status=["requires_action"])),
    "tool_calls a dict": _field(_set(required_action={
        "type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": {"id": "call_x"}}})),
    "arguments an object": _field(_arguments_object),
    "expires_at a string": _field(_set(expires_at="soon")),
    "expires_at NaN": _field(_set(expires_at=float("nan"))),
    "someone else's run": _someone_elses,
}


def skewed(value: Any, skew_s: float) -> Any:
    """``value`` with every ``*_at`` number moved by ``skew_s`` (whole seconds, as the API)."""
    if isinstance(value, dict):
        return {k: (v + int(skew_s) if k.endswith("_at") and isinstance(v, int | float)
                    and not isinstance(v, bool) else skewed(v, skew_s))
                for k, v in value.items()}
    if isinstance(value, list):
        return [skewed(item, skew_s) for item in value]
    return value


def skewed_events(body: bytes, skew_s: float) -> bytes:
    """A server-sent event stream with the timestamps in each event's JSON data skewed."""
    lines = []
    for line in body.decode().split("\n"):
        if line.startswith("data: {"):
            line = "data: " + json.dumps(skewed(json.loads(line[6:]), skew_s))
        lines.append(line)
    return "\n".join(lines).encode()


class Gateway:
    """The reverse proxy; ``base_url`` is what the worker is pointed at."""

    def __init__(self, upstream_url: str, *, poisoned: Iterable[str] = (),
                 skew_s: float = 0.0) -> None:
        self._upstream = upstream_url.split("/v1")[0]
        self.poisoned = frozenset(poisoned)
        self.skew_s = skew_s
        self.requests: Counter[str] = Counter()  # per poisoned thread
        self.garbled: Counter[str] = Counter()  # per garble
        self.passed = 0
        self.last_healthy_run: dict[str, Any] | None = None
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._served: ServedApp | None = None

    @property
    def base_url(self) -> str:
        assert self._served is not None
        return f"{self._served.url}/v1"

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._served = await ServedApp(app).__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._served is not None
        assert self._session is not None
        await self._served.__aexit__(*exc)
        await self._session.close()

    def _poisoned_thread(self, path: str) -> str | None:
        parts = path.split("/")
        return next((part for part in parts if part in self.poisoned), None)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        upstream = await self._forward(request)
        thread = self._poisoned_thread(request.path)
        if thread is not None:
            self.requests[thread] += 1
            name = list(GARBLES)[next(self._turn) % len(GARBLES)]
            self.garbled[name] += 1
            return await GARBLES[name](request, upstream, self)
        self.passed += 1
        if upstream.runs() and upstream.status == 200:
            self.last_healthy_run = upstream.runs()[0]
        body = upstream.body
        if self.skew_s and upstream.json is not None:
            body = json.dumps(skewed(upstream.json, self.skew_s)).encode()
        elif self.skew_s and body.startswith(b"event:"):  # a stream: skew each event's data
            body = skewed_events(body, self.skew_s)
        headers = dict(upstream.headers)
        if self.skew_s:
            headers["Date"] = formatdate(time.time() + self.skew_s, usegmt=True)
        return web.Response(status=upstream.status, body=body, headers=headers)

    async def _forward(self, request: web.Request) -> Upstream:
        assert self._session is not None
        headers = {k: request.headers[k] for k in _UP if k in request.headers}
        async with self._session.request(
            request.method, f"{self._upstream}{request.path_qs}", headers=headers,
            data=await request.read(),
        ) as response:
            wanted = {k: response.headers[k] for k in _DOWN if k in response.headers}
            return Upstream(response.status, await response.read(), wanted)

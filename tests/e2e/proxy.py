"""A small HTTP proxy in front of the simulator: the gateway whose misbehaviour a test switches on.

Every request goes through ``Proxy.rule``, which may answer it (a 413, an HTML 502 page), hang
it, drop its connection, or garble the upstream's answer; ``None`` forwards it untouched.
``down()`` and ``up()`` stop and restart listening on the same port: connections are refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Self

import aiohttp
import anyio
from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.simulator import Simulator

__all__ = ["Act", "Proxy", "endpoint_of"]

# Headers of the simulator's answer that the worker reads; the rest are hop-by-hop or noise.
_PASSED = ("Content-Type", "openai-poll-after-ms", "Retry-After", "retry-after-ms", "Date",
           "x-request-id")


@dataclass(frozen=True, slots=True)
class Act:
    """What the proxy does with one request instead of forwarding it."""

    kind: Literal["answer", "hang", "drop", "garble"]
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


def endpoint_of(request: web.Request) -> str:
    """A short name for the request: submit, retrieve_run, list_runs, list_threads, ..."""
    path = request.path.rstrip("/")
    if path.endswith("/submit_tool_outputs"):
        return "submit"
    if path.endswith("/cancel"):
        return "cancel"
    if path.endswith("/runs"):
        return "list_runs"
    if "/runs/" in path:
        return "retrieve_run"
    if path.endswith("/threads"):
        return "list_threads"
    if "/assistants" in path:
        return "assistants"
    return "other"


class Proxy:
    """Forwards to the simulator unless ``rule`` says otherwise; ``url`` is the API base URL."""

    def __init__(self, sim: Simulator) -> None:
        self.upstream = f"http://127.0.0.1:{sim.port}"
        self._prefix = sim.path_prefix
        self.rule: Callable[[web.Request], Act | None] = lambda _request: None
        self.seen: Counter[str] = Counter()  # requests by endpoint_of(), acted on or not
        self.acted: Counter[str] = Counter()  # requests the rule acted on, by endpoint
        self.release = anyio.Event()  # hung requests end (with a 504) once this is set
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """The API's base URL through the proxy (``/v1``, or the azure project's path)."""
        return f"http://127.0.0.1:{self.port}{self._prefix}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await self.up()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._runner is not None
        assert self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    async def up(self) -> None:
        """Listen (again, on the same port once it had one)."""
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        self.port = int(self._site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def down(self) -> None:
        """Stop listening: new connections are refused until ``up()``."""
        assert self._site is not None
        await self._site.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = endpoint_of(request)
        self.seen[endpoint] += 1
        act = self.rule(request)
        if act is not None:
            self.acted[endpoint] += 1
        if act is None or act.kind == "garble":
            status, headers, body = await self._forward(request)
            if act is None:
                return web.Response(status=status, body=body, headers=headers)
            # The upstream applied the request; its answer is lost in a broken gateway.
            return web.Response(status=200, body=body[: len(body) // 2],
                                content_type="application/json")
        if act.kind == "hang":
            await self.release.wait()
            return web.Response(status=504)
        if act.kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        return web.Response(status=act.status, body=act.body, content_type=act.content_type)

    async def _forward(self, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers,
            data=await request.read(),
        ) as answer:
            body = await answer.read()
            passed = {k: answer.headers[k] for k in _PASSED if k in answer.headers}
            return answer.status, passed, body

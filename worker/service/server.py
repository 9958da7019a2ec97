"""The worker's HTTP server: /metrics, /healthz, /readyz, /status and POST /v1/watch."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from worker.errors import ConfigError, InvalidId, WatchLimitReached, WatchStoreError
from worker.ids import MAX_ID_CHARS, is_valid_id
from worker.service.connections import ConnectionGuard
from worker.service.intake import Refusals
from worker.service.request_checks import (
    HOST_CHECKED_PATHS,
    UNREADABLE,
    foreign_host,
    throttle_key,
)
from worker.service.status import render_status
from worker.service.webhooks import WebhookIntake

if TYPE_CHECKING:
    from worker.config.secret import Secret
    from worker.config.settings import ServerSettings
    from worker.observability.metrics import Metrics
    from worker.service.intake import Watch

__all__ = ["FailureThrottle", "Readiness", "Server"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (ready, reasons): reasons explain the answer to whoever reads /readyz at 3 a.m.
Readiness = Callable[[], tuple[bool, dict[str, Any]]]

_BODY_HINT = ('send {"thread_id": "thread_abc123", "run_id": "run_abc123"} (run_id optional), '
              'or {"session_id": "sess_abc123"} (backend "agents")')


class FailureThrottle:
    """Refuses an address for the rest of its window after ``max_failures`` failed requests.

    An IPv6 address counts as its /64 (``throttle_key``): a host holds the whole prefix.

    Memory is bounded: at most ``max_addresses`` are remembered, the least recently failing
    forgotten first, so a flood from many addresses cannot grow the table.
    """

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window_s = window_s
        self._max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # (window start, n)

    def retry_after_s(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None while it may."""
        address = throttle_key(address)
        entry = self._failures.get(address)
        if entry is None or self._max_failures == 0:
            return None
        started, count = entry
        remaining_s = started + self._window_s - self._clock()
        if remaining_s <= 0:
            del self._failures[address]
            return None
        return math.ceil(remaining_s) if count >= self._max_failures else None

    def failed(self, address: str) -> None:
        address = throttle_key(address)
        now = self._clock()
        started, count = self._failures.pop(address, (now, 0))
        if now - started > self._window_s:
            started, count = now, 0
        self._failures[address] = (started, count + 1)
        while len(self._failures) > self._max_addresses:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(throttle_key(address), None)

    def __len__(self) -> int:
        return len(self._failures)


class Server:
    """Serves the worker's metrics and health, and takes new work at POST /v1/watch."""

    def __init__(
        self,
        settings: ServerSettings,
        metrics: Metrics,
        readiness: Readiness,
        *,
        liveness: Readiness | None = None,
        watch: Watch | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        max_connections: int | None = None,
        webhook_watch: Watch | None = None,
    ) -> None:
        """``webhook_watch``: what a webhook's session goes to (default ``watch``).
        ``status``: the status page's snapshot (``StatusBoard.snapshot``); None: no page.
        ``max_connections``: the cap that fits ``ulimit -n`` (``connection_cap``); None: as set.
        """
        self._host = settings.host
        self._port = settings.port
        self._token = settings.watch_token
        self._metrics = metrics
        self._readiness = readiness
        self._liveness = liveness
        self._watch = watch
        self._status = status
        self.refusals = Refusals(metrics, "http")
        self.throttle = FailureThrottle(settings.watch_max_failures, settings.watch_failure_window_s)
        self.connections = ConnectionGuard(
            max_connections or settings.max_connections, idle_timeout_s=settings.idle_timeout_s,
            request_timeout_s=settings.request_timeout_s, metrics=metrics)
        self.webhooks = None if settings.webhook_secret is None or watch is None else WebhookIntake(
            settings.webhook_secret, webhook_watch or watch, Refusals(metrics, "webhook"))
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024, middlewares=[self._track])
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_post("/v1/watch", self._watch_request)
        app.router.add_post("/v1/webhooks/openai", self._webhook)
        app.router.add_get("/status", self._status_page)
        app.router.add_get("/status.json", self._status_page)
        return app

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; reports the bound port through ``task_status``."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                               logger=self.connections.request_log,
                               # aiohttp's own timer only as a backstop: the guard closes (and counts) first.
                               keepalive_timeout=2 * (self.connections.idle_timeout_s
                                                      + self.connections.request_timeout_s))
        await runner.setup()
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(self.connections.exception_handler(previous))
        listener: asyncio.Server | None = None
        try:
            listener = await self._listen(runner)
            self.port = listener.sockets[0].getsockname()[1]
            task_status.started(self.port)
            while True:  # the summary of refused requests is written even when they stop
                await anyio.sleep(1.0)
                self.refusals.flush()
                self.connections.sweep()
        finally:
            with anyio.CancelScope(shield=True):
                if listener is not None:
                    listener.close()
                await runner.cleanup()
                loop.set_exception_handler(previous)
                self.refusals.flush(force=True)

    async def _listen(self, runner: web.AppRunner) -> asyncio.Server:
        """Accept through the connection guard (not a ``TCPSite``), so every one is bounded."""
        if runner.server is None:
            raise RuntimeError("the runner is not set up")
        factory = self.connections.protocol_factory(runner.server)
        try:
            return await asyncio.get_running_loop().create_server(
                factory, self._host, self._port, backlog=128)
        except OSError as exc:  # in use, or an address this host does not have
            raise ConfigError(
                f"cannot listen on {self._host}:{self._port} ({exc.strerror or exc}); "
                "set [server] port to a free one (0: any) or stop what holds it",
                key="server.port") from exc

    @web.middleware
    async def _track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """What every request goes through: the connection guard hears it is busy, a foreign
        ``Host`` is refused, and a request that cannot be read is a 400, not a 500."""
        transport = request.transport
        self.connections.request_started(transport)
        try:
            return self._refuse_host(request) or await handler(request)
        except UNREADABLE as exc:
            address = request.remote or "unknown"
            self.throttle.failed(address)
            self.refusals.refuse("bad_request", f"an unreadable request ({type(exc).__name__})",
                                 address=address, path=request.path[:60])
            return _problem(400, "the request cannot be read: bytes that are not UTF-8, JSON "
                                 "nested too deep, an unknown charset, or a body that does not "
                                 "decode as its Content-Encoding says")
        except ConnectionResetError:  # the client left mid-body: no one reads an answer
            self.connections.cut_short(request.path)
            return _problem(400, "the body never arrived whole")
        finally:
            self.connections.request_finished(transport)

    def _refuse_host(self, request: web.Request) -> web.Response | None:
        """A 403 when a loopback-bound server is asked under another name (DNS rebinding)."""
        if request.path not in HOST_CHECKED_PATHS or not _is_loopback(self._host):
            return None
        host = foreign_host(request.headers.get("Host"))
        if host is None:
            return None
        self.refusals.refuse("bad_host", "a Host that is not loopback, on a loopback server",
                             address=request.remote or "unknown", host=repr(host))
        return _problem(403, "this worker listens on loopback and answers only to Host "
                             "localhost, 127.0.0.1 or [::1]")

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        # Rendered in a thread: a large registry takes CPU, and process metrics read /proc.
        body = await anyio.to_thread.run_sync(self._metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        alive, reasons = self._liveness() if self._liveness is not None else (True, {})
        body = {"status": "alive" if alive else "stuck", **reasons}
        return web.json_response(body, status=200 if alive else 503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, reasons = self._readiness()
        body = {"status": "ready" if ready else "not ready", **reasons}
        return web.json_response(body, status=200 if ready else 503, dumps=json.dumps)

    async def _status_page(self, request: web.Request) -> web.Response:
        if self._status is None:
            return _problem(404, "the status page is off")
        refused = self._refuse_status(request)
        if refused is not None:
            return refused
        snapshot = self._status()
        if request.path.endswith(".json"):
            return web.json_response(snapshot, headers=_NO_STORE)
        return web.Response(text=render_status(snapshot), content_type="text/html",
                            headers=_NO_STORE)

    def _refuse_status(self, request: web.Request) -> web.Response | None:
        """None when the page may be shown: on loopback, or to whoever has the watch token.

        The token comes as ``Authorization: Bearer`` (scripts) or as the password of Basic
        authentication, which a browser asks for by itself (any user name).
        """
        if _is_loopback(self._host):
            return None
        if self._token is None:
            return _problem(403, "the status page beyond loopback needs [server] watch_token")
        address = request.remote or "unknown"
        throttled = self._throttled(address)
        if throttled is not None:
            return throttled
        given = _presented_token(request.headers.get("Authorization", ""))
        if given is not None and hmac.compare_digest(given, self._token.get().encode()):
            self.throttle.succeeded(address)
            return None
        self.throttle.failed(address)
        self.refusals.refuse("auth", "missing or wrong token for the status page",
                             address=address)
        return _problem(401, "the status page needs the watch token",
                        headers={"WWW-Authenticate": 'Basic realm="tool-worker status"'})

    def _throttled(self, address: str) -> web.Response | None:
        """A 429 for an address that failed too often lately, or None."""
        retry_after_s = self.throttle.retry_after_s(address)
        if retry_after_s is None:
            return None
        self.refusals.refuse("throttled", "too many failed requests", address=address)
        return _problem(429, f"too many failed requests from {address}; retry in "
                        f"{retry_after_s} s", headers={"Retry-After": str(retry_after_s)})

    async def _webhook(self, request: web.Request) -> web.Response:
        if self.webhooks is None:
            return _problem(404, "POST /v1/webhooks/openai is off; set "
                                 "TOOL_WORKER__SERVER__WEBHOOK_SECRET to enable it")
        address = request.remote or "unknown"
        throttled = self._throttled(address)
        if throttled is not None:
            return throttled
        response = await self.webhooks.handle(request)
        # Forged or garbled deliveries count against the address; a replay or a full worker not.
        (self.throttle.failed if response.status in (400, 401) else self.throttle.succeeded)(
            address)
        return response

    async def _watch_request(self, request: web.Request) -> web.Response:
        token, watch = self._token, self._watch
        if token is None or watch is None:
            return _problem(404, "POST /v1/watch is off; set [server] watch_token to enable it")
        address = request.remote or "unknown"
        throttled = self._throttled(address)
        if throttled is not None:
            return throttled
        try:
            response = await _answer_watch(request, token, watch)
        except _Refused as refused:
            if refused.reason not in ("full", "unavailable"):  # not the caller's fault
                self.throttle.failed(address)
            self.refusals.refuse(refused.reason, refused.message, address=address)
            return _problem(refused.status, refused.message)
        self.throttle.succeeded(address)
        return response


async def _answer_watch(request: web.Request, token: Secret, watch: Watch) -> web.Response:
    """Watch the thread of an authorised, well-formed request.

    Raises:
        _Refused: with the status, message and reason (``metrics.INTAKE_REFUSALS``).
    """
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = token.get().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise _Refused(401, "missing or wrong bearer token", "auth")
    try:
        body = await request.json()
    except ValueError:
        raise _Refused(400, f"the body is not JSON; {_BODY_HINT}", "bad_request") from None
    except web.HTTPRequestEntityTooLarge:
        raise _Refused(413, f"the body is too large; {_BODY_HINT}", "bad_request") from None
    fields = body if isinstance(body, dict) else {}
    thread_id, run_id = fields.get("thread_id"), fields.get("run_id")
    if "session_id" in fields and thread_id is None and run_id is None:
        thread_id = fields["session_id"]  # a session is watched as a thread is (backend agents)
    if not isinstance(thread_id, str) or not isinstance(run_id, str | None):
        raise _Refused(400, f"thread_id must be a string and run_id a string or absent; "
                       f"{_BODY_HINT}", "bad_request")
    for what, value in (("thread_id", thread_id), ("run_id", run_id)):
        if value is not None and not is_valid_id(value):
            raise _Refused(400, str(InvalidId(what, value, max_chars=MAX_ID_CHARS)), "bad_id")
    try:
        await watch(thread_id, run_id)  # committed to the watch store when it returns
    except WatchLimitReached as exc:
        raise _Refused(429, str(exc), "full") from None
    except WatchStoreError as exc:
        raise _Refused(503, f"cannot keep the thread now ({exc.reason}); retry later",
                       "unavailable") from None
    return web.json_response({"watching": thread_id, "run_id": run_id}, status=202)


class _Refused(Exception):
    """A watch request answered with an error: ``status``, ``message`` and a refusal reason."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        self.status, self.message, self.reason = status, message, reason
        super().__init__(message)


_NO_STORE = {"Cache-Control": "no-store"}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere


def _presented_token(header: str) -> bytes | None:
    """The token of ``Authorization: Bearer <token>`` or of Basic's password."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip().encode()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


def _problem(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)

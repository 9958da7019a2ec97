"""The worker's HTTP server: /metrics, /healthz, /readyz and POST /v1/watch."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from .metrics import Metrics

if TYPE_CHECKING:
    from .config import ServerSettings

__all__ = ["Readiness", "Server"]

# (ready, reasons): reasons explain the answer to whoever reads /readyz at 3 a.m.
Readiness = Callable[[], tuple[bool, dict[str, Any]]]
# Adds a thread (and optionally a known run of it) to the watched set.
Watch = Callable[[str, str | None], None]

_MAX_ID_CHARS = 200


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
    ) -> None:
        self._host = settings.host
        self._port = settings.port
        self._token = settings.watch_token
        self._metrics = metrics
        self._readiness = readiness
        self._liveness = liveness
        self._watch = watch
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_post("/v1/watch", self._watch_request)
        return app

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; reports the bound port through ``task_status``."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            self.port = runner.addresses[0][1]
            task_status.started(self.port)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

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

    async def _watch_request(self, request: web.Request) -> web.Response:
        if self._token is None or self._watch is None:
            return _problem(404, "POST /v1/watch is off; set [server] watch_token to enable it")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = self._token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            return _problem(401, "missing or wrong bearer token")
        try:
            body = await request.json()
        except ValueError:
            return _problem(400, "the body is not JSON; send {\"thread_id\": \"thread_...\"}")
        thread_id = body.get("thread_id") if isinstance(body, dict) else None
        run_id = body.get("run_id") if isinstance(body, dict) else None
        if not _is_id(thread_id) or (run_id is not None and not _is_id(run_id)):
            return _problem(400, "thread_id must be a non-empty string id, run_id one or absent")
        self._watch(str(thread_id), run_id)
        return web.json_response({"watching": thread_id, "run_id": run_id}, status=202)


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_ID_CHARS and value.isprintable()


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)

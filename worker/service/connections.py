"""What a client of the worker's HTTP server may hold: a bounded number of connections, briefly.

Without bounds, connections that send nothing or half a request are kept for ever: 1,100 of
them used every file descriptor of a worker under systemd's default ``LimitNOFILE``, and it
could no longer reach the API (issue #25). ``ConnectionGuard`` sits between the listening
socket and aiohttp and enforces, without any token:

- an idle timeout: a connection with no request in progress is closed after ``idle_timeout_s``
  (new connections that never send, and keep-alive connections between requests);
- a request timeout: a request must arrive whole (headers, then body, then its answer) within
  ``request_timeout_s`` of its first byte, so a slow sender (slowloris) cannot hold a slot;
- a cap: past ``max_connections``, a new connection closes the longest-idle one, or is itself
  closed when every connection is busy. The cap is kept below ``ulimit -n`` less a reserve
  for the API's pools, Redis and files, so the worker can always reach the API.

``accept()`` failures (EMFILE) are logged once per interval with a count, not per attempt, and
so are requests aiohttp cannot parse (a header line over 8 KiB, Content-Length with
Transfer-Encoding, TLS to a plain port): each is a 400 and a closed connection, counted, where
aiohttp printed a traceback per request to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger
from aiohttp.web_protocol import RequestPayloadError

from worker.observability.metrics import HTTP_CLOSE_REASONS

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.config.settings import Settings
    from worker.observability.metrics import Metrics

__all__ = ["ConnectionGuard", "connection_cap"]

log = structlog.get_logger("worker.service.connections")

# Descriptors beyond the pools: log files, the selector, Redis's blocking read, handlers'
# files, thread pools. Generous: running short of these is what the guard exists to prevent.
FIXED_RESERVE_FDS = 64
MIN_CONNECTIONS = 8
ACCEPT_LOG_INTERVAL_S = 10.0


def connection_cap(settings: Settings, *, soft_limit: int | None = None) -> int:
    """How many connections the server may hold: ``[server] max_connections`` if it fits.

    It fits when ``ulimit -n`` less a reserve (both API pools and the stream pool at their
    size, Redis, ``FIXED_RESERVE_FDS``) leaves room; otherwise the room is the cap, and a
    warning says to raise ``LimitNOFILE``.
    """
    if soft_limit is None:
        soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    api = settings.api
    reserve = 2 * api.max_connections + api.max_streams + FIXED_RESERVE_FDS
    if settings.coordination.backend == "redis" or settings.intake.redis_stream:
        reserve += settings.tools.max_concurrent_rounds + 2  # a Redis call per round, the intake
    wanted = settings.server.max_connections
    if soft_limit == resource.RLIM_INFINITY or soft_limit < 0:
        return wanted
    room = soft_limit - reserve
    if wanted <= room:
        return wanted
    cap = max(room, MIN_CONNECTIONS)
    log.warning("[server] max_connections does not fit in the file descriptor limit; lowered",
                max_connections=wanted, lowered_to=cap, nofile_limit=soft_limit,
                reserved_for_api_and_redis=reserve,
                hint="raise LimitNOFILE (ulimit -n) or lower [api] max_connections")
    return cap


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, the guard's bookkeeping around it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.busy = 0  # requests being answered now
        self.idle_since = guard.clock()
        self.request_since: float | None = None  # first byte of a request not yet answered
        self.admitted = False  # aiohttp saw connection_made, so it must see connection_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self._guard.opened(self, transport):
            self.admitted = True
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.request_since is None:
            self.request_since = self._guard.clock()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.lost(self)
        if self.admitted:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _RequestLog(logging.Logger):
    """aiohttp's server log, where a request it cannot parse becomes a count, not a traceback."""

    def __init__(self, guard: ConnectionGuard) -> None:
        super().__init__(server_logger.name)
        self._guard = guard

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        # RequestPayloadError: a body that does not decode, met again as aiohttp drains it
        # after the 400 (and then closes the connection).
        if isinstance(exc_info, HttpProcessingError | RequestPayloadError):
            self._guard.malformed(exc_info)
        else:  # a fault of aiohttp's or ours: kept whole
            server_logger.exception(msg, *args, exc_info=exc_info, **kw)

    def debug(self, msg: object, *args: object, **kw: Any) -> None:
        server_logger.debug(msg, *args, **kw)


class ConnectionGuard:
    """Bounds the connections of one HTTP server; see the module's docstring."""

    def __init__(
        self,
        max_connections: int,
        *,
        idle_timeout_s: float,
        request_timeout_s: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.request_timeout_s = request_timeout_s
        self.clock = clock
        self._metrics = metrics
        # Least recently active first: the first idle one found is the one to evict.
        self._open: OrderedDict[_Connection, None] = OrderedDict()
        self._by_transport: dict[asyncio.BaseTransport, _Connection] = {}
        self._accept_errors = 0
        self._accept_logged_at = -math.inf
        self._malformed = 0
        self._malformed_logged_at = -math.inf
        self.request_log: logging.Logger = _RequestLog(self)
        self.closed: dict[str, int] = dict.fromkeys(HTTP_CLOSE_REASONS, 0)

    def __len__(self) -> int:
        return len(self._open)

    def protocol_factory(self, inner: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        """Wrap aiohttp's protocol factory (``runner.server``) for ``loop.create_server``."""
        return lambda: _Connection(self, inner())

    def opened(self, conn: _Connection, transport: asyncio.BaseTransport) -> bool:
        """Admit a new connection, making room past the cap; False: it was refused."""
        if len(self._open) >= self.max_connections and not self._evict_one():
            self._close(conn, "refused")
            return False
        self._open[conn] = None
        self._by_transport[transport] = conn
        self._gauge()
        return True

    def lost(self, conn: _Connection) -> None:
        """Forget a closed connection (evicted ones are forgotten as they are closed)."""
        if conn in self._open:
            del self._open[conn]
            self._gauge()
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)

    def request_started(self, transport: Any) -> None:
        """A request's headers arrived and its handler runs (called by the middleware)."""
        conn = self._by_transport.get(transport)
        if conn is not None:
            conn.busy += 1

    def request_finished(self, transport: Any) -> None:
        """The request was answered: the connection is idle from now."""
        conn = self._by_transport.get(transport)
        if conn is not None:
            conn.busy = max(conn.busy - 1, 0)
            conn.request_since = None
            conn.idle_since = self.clock()
            self._open.move_to_end(conn)

    def sweep(self) -> None:
        """Close connections idle past ``idle_timeout_s`` or with a request overdue."""
        now = self.clock()
        for conn in list(self._open):
            if conn.request_since is not None and now - conn.request_since > self.request_timeout_s:
                self._close(conn, "slow_request")
            elif (not conn.busy and conn.request_since is None
                  and now - conn.idle_since > self.idle_timeout_s):
                self._close(conn, "idle")

    def _evict_one(self) -> bool:
        for conn in self._open:
            if not conn.busy:
                self._close(conn, "evicted")
                return True
        return False

    def _close(self, conn: _Connection, reason: str) -> None:
        # Forgotten at once, not on connection_lost: the slot is free now, counted once.
        self.lost(conn)
        self.closed[reason] += 1
        if self._metrics is not None:
            self._metrics.http_connections_closed.labels(reason).inc()
        if conn.transport is not None:
            # abort(): the descriptor is freed now, without waiting on a peer that reads nothing.
            abort = getattr(conn.transport, "abort", conn.transport.close)
            abort()

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.http_connections.set(len(self._open))

    def malformed(self, exc: Exception) -> None:
        """A request aiohttp could not parse: it answers 400 and closes; counted, logged rarely."""
        self._count_malformed()
        self._malformed += 1
        now = self.clock()
        if now - self._malformed_logged_at >= ACCEPT_LOG_INTERVAL_S:
            log.warning("requests the HTTP server could not parse were answered 400",
                        requests=self._malformed, last=type(exc).__name__)
            self._malformed, self._malformed_logged_at = 0, now

    def cut_short(self, path: str) -> None:
        """A client that closed before its body arrived whole: counted as ``malformed``, and
        logged at debug (aiohttp printed a traceback for each)."""
        self._count_malformed()
        log.debug("a client closed its connection before the body arrived", path=path[:60])

    def _count_malformed(self) -> None:
        self.closed["malformed"] += 1
        if self._metrics is not None:
            self._metrics.http_connections_closed.labels("malformed").inc()

    def exception_handler(self, previous: Callable[..., Any] | None) -> Callable[..., Any]:
        """A loop exception handler: ``accept()`` failures summed into one line per interval."""

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if "socket.accept()" not in str(context.get("message", "")):
                if previous is not None:
                    previous(loop, context)
                else:
                    loop.default_exception_handler(context)
                return
            self._accept_errors += 1
            if self._metrics is not None:
                self._metrics.http_accept_errors.inc()
            now = self.clock()
            if now - self._accept_logged_at >= ACCEPT_LOG_INTERVAL_S:
                log.error("the HTTP server cannot accept connections; out of file descriptors?",
                          error=str(context.get("exception")), failures=self._accept_errors,
                          interval_s=ACCEPT_LOG_INTERVAL_S,
                          hint="raise LimitNOFILE or lower [server] max_connections")
                self._accept_errors = 0
                self._accept_logged_at = now

        return handle

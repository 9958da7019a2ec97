"""The HTTP server's connection guard: a cap that fits ulimit -n, idle and slow clients cut."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import make_settings
from worker.observability.metrics import Metrics
from worker.service.connections import ConnectionGuard, connection_cap
from worker.testing import capture_logs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


class FakeInner(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append("data")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


def guard(cap: int, clock: Clock) -> ConnectionGuard:
    return ConnectionGuard(cap, idle_timeout_s=5.0, request_timeout_s=2.0, clock=clock,
                           metrics=Metrics())


def connect(g: ConnectionGuard) -> tuple[Any, FakeTransport, FakeInner]:
    inner = FakeInner()
    conn = g.protocol_factory(lambda: inner)()
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, inner


def test_the_cap_is_lowered_to_leave_descriptors_for_the_api_and_redis() -> None:
    settings = make_settings(api={"max_connections": 16, "max_streams": 8},
                             server={"max_connections": 512})
    with capture_logs() as logs:
        assert connection_cap(settings, soft_limit=256) == 256 - (2 * 16 + 8 + 64)
        assert connection_cap(settings, soft_limit=100_000) == 512
    assert [e["lowered_to"] for e in logs if "does not fit" in e["event"]] == [152]


def test_with_too_few_descriptors_the_cap_still_admits_a_few() -> None:
    assert connection_cap(make_settings(), soft_limit=256) == 8


def test_past_the_cap_the_longest_idle_connection_makes_room() -> None:
    clock = Clock()
    g = guard(2, clock)
    first, first_transport, first_inner = connect(g)
    clock.now = 1
    _, second_transport, _ = connect(g)
    g.request_started(second_transport)
    clock.now = 2
    _, third_transport, third_inner = connect(g)
    assert first_transport.aborted
    assert not second_transport.aborted
    assert not third_transport.aborted
    assert third_inner.events == ["made"]
    assert g.closed["evicted"] == 1
    assert len(g) == 2
    first.connection_lost(None)  # the transport reports the close later: aiohttp hears it once
    assert first_inner.events == ["made", "lost"]
    assert len(g) == 2


def test_with_every_connection_busy_a_new_one_is_refused_unseen_by_aiohttp() -> None:
    clock = Clock()
    g = guard(1, clock)
    _, busy_transport, _ = connect(g)
    g.request_started(busy_transport)
    refused, transport, inner = connect(g)
    refused.connection_lost(None)
    assert transport.aborted
    assert inner.events == []
    assert g.closed["refused"] == 1


def test_idle_and_slow_connections_are_closed_by_the_sweep() -> None:
    clock = Clock()
    g = guard(10, clock)
    _, idle, _ = connect(g)
    slow, slow_transport, _ = connect(g)
    slow.data_received(b"GET / HTTP/1.1\r\n")
    _, answered, _ = connect(g)
    clock.now = 2.5
    g.sweep()
    assert (idle.aborted, slow_transport.aborted, answered.aborted) == (False, True, False)
    g.request_started(answered)
    g.request_finished(answered)  # answered at 2.5: idle from then
    clock.now = 6
    g.sweep()
    assert (idle.aborted, answered.aborted) == (True, False)
    assert g.closed == {"idle": 1, "slow_request": 1, "evicted": 0, "refused": 0,
                        "malformed": 0}


def test_accept_errors_are_one_line_per_interval() -> None:
    clock = Clock()
    g = guard(10, clock)
    handler = g.exception_handler(None)
    loop = asyncio.new_event_loop()
    try:
        with capture_logs() as logs:
            for _ in range(1000):
                handler(loop, {"message": "socket.accept() out of system resource",
                               "exception": OSError(24, "Too many open files")})
            clock.now = 11
            handler(loop, {"message": "socket.accept() out of system resource"})
    finally:
        loop.close()
    lines = [e for e in logs if "cannot accept" in e["event"]]
    assert [line["failures"] for line in lines] == [1, 1000]

"""Hostile requests to the worker's own server that used to be a 500 or get through (#25).

Raw bytes over a real loopback socket: a client library would refuse to send most of these.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.conftest import wait_for
from worker.config.secret import Secret
from worker.config.settings import ServerSettings
from worker.observability.metrics import Metrics
from worker.service.server import FailureThrottle, Server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.e2e

TOKEN = "attacks-http-token-0123456789"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"attacks-http-webhook-key-32bytes").decode()
WEBHOOK_HEAD = (b"POST /v1/webhooks/openai HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n")


class Served:
    def __init__(self, server: Server, metrics: Metrics) -> None:
        self.server, self.metrics = server, metrics
        self.seen: list[str] = []

    async def send(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """One raw request (``Connection: close`` and the length are added); status, body."""
        assert self.server.port is not None
        request = (head.rstrip(b"\r\n") + b"\r\nConnection: close\r\n"
                   + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = b""
        async with await anyio.connect_tcp("127.0.0.1", self.server.port) as stream:
            await stream.send(request)
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        status_line, _, rest = answer.partition(b"\r\n")
        return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    metrics = Metrics()
    seen: list[str] = []

    async def watch(thread_id: str, _run_id: str | None) -> None:
        seen.append(thread_id)

    server = Server(
        ServerSettings(host="127.0.0.1", port=0, watch_token=Secret(TOKEN), watch_max_failures=5,
                       webhook_secret=Secret(WEBHOOK_SECRET)),
        metrics, lambda: (True, {}), watch=watch,
        status=lambda: {"rounds": {}},
    )
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        result = Served(server, metrics)
        result.seen = seen
        yield result
        tg.cancel_scope.cancel()


def watch_head(authorization: bytes = f"Bearer {TOKEN}".encode(),
               content_type: bytes = b"application/json", host: bytes = b"127.0.0.1") -> bytes:
    return (b"POST /v1/watch HTTP/1.1\r\nHost: " + host + b"\r\nAuthorization: " + authorization
            + b"\r\nContent-Type: " + content_type + b"\r\n")


def refused(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("toolworker_intake_refused_total", {"reason": reason})
    return float(value or 0)


GOOD = json.dumps({"thread_id": "thread_abc"}).encode()


@pytest.mark.parametrize(("name", "head", "body"), [
    ("authorization not UTF-8", watch_head(authorization=b"Bearer \xff\xfe\xfd"), GOOD),
    ("JSON nested past the recursion limit", watch_head(), b"[" * 30_000 + b"]" * 30_000),
    ("an unknown charset", watch_head(content_type=b"application/json; charset=x-nonesuch"),
     GOOD),
])
async def test_an_unreadable_request_is_a_counted_400_not_a_500(
    served: Served, name: str, head: bytes, body: bytes
) -> None:
    status, answer = await served.send(head, body)
    assert status == 400, (name, answer[:200])
    assert b"Traceback" not in answer
    assert refused(served.metrics, "bad_request") == 1
    assert served.seen == []


async def test_unreadable_requests_are_throttled(served: Served) -> None:
    """They count as failures of the address: after watch_max_failures, 429."""
    statuses = [(await served.send(watch_head(authorization=b"Bearer \xff"), GOOD))[0]
                for _ in range(7)]
    assert statuses == [400] * 5 + [429] * 2


@pytest.mark.parametrize("path", [b"/status.json", b"/v1/watch"])
async def test_a_foreign_host_is_refused_on_loopback(served: Served, path: bytes) -> None:
    """DNS rebinding: a page at evil.example rebound to 127.0.0.1 sends Host: evil.example."""
    method = b"POST" if path == b"/v1/watch" else b"GET"
    head = (method + b" " + path + b" HTTP/1.1\r\nHost: evil.example:9464\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Type: application/json\r\n")
    status, _ = await served.send(head, GOOD if method == b"POST" else b"")
    assert status == 403
    assert refused(served.metrics, "bad_host") == 1
    assert served.seen == []


@pytest.mark.parametrize("host", [b"127.0.0.1", b"localhost:9464", b"[::1]:9464",
                                  b"LOCALHOST", b"127.0.0.2"])
async def test_loopback_names_are_answered(served: Served, host: bytes) -> None:
    status, body = await served.send(b"GET /status.json HTTP/1.1\r\nHost: " + host + b"\r\n")
    assert status == 200, body
    status, _ = await served.send(watch_head(host=host), GOOD)
    assert status == 202


async def test_probes_answer_any_host(served: Served) -> None:
    """/readyz, /healthz and /metrics show no user data; probes use the pod's name or IP."""
    status, _ = await served.send(b"GET /readyz HTTP/1.1\r\nHost: worker-0.example\r\n")
    assert status == 200


def test_an_ipv6_host_is_throttled_as_its_64() -> None:
    """Cycling through the addresses of one /64 does not evade the throttle; IPv4 as before."""
    throttle = FailureThrottle(3, 60.0, clock=lambda: 0.0)
    for i in range(3):
        throttle.failed(f"2001:db8:1:2::{i + 1:x}")
    assert throttle.retry_after_s("2001:db8:1:2:ffff::9") == 60
    assert throttle.retry_after_s("2001:db8:1:3::1") is None
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        throttle.failed(address)
    assert throttle.retry_after_s("192.0.2.4") is None
    throttle.failed("::ffff:192.0.2.4")
    throttle.failed("192.0.2.4")
    throttle.failed("192.0.2.4")
    assert throttle.retry_after_s("192.0.2.4") == 60


@pytest.mark.parametrize("head", [
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 9000 + b"\r\n",
    b"POST /v1/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n",
], ids=["long_header_line", "length_and_chunked"])
async def test_a_request_aiohttp_cannot_parse_is_a_counted_400_without_a_traceback(
    served: Served, head: bytes, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A header line over 8 KiB, or Content-Length with Transfer-Encoding (send adds the length):
    aiohttp printed a traceback per request to stderr, uncounted."""
    for _ in range(3):
        status, _ = await served.send(head)
        assert status == 400
    closed = served.metrics.registry.get_sample_value(
        "toolworker_http_connections_closed_total", {"reason": "malformed"})
    assert closed == 3
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.exc_info]
    async with await anyio.connect_tcp("127.0.0.1", served.server.port or 0) as stream:
        await stream.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await stream.receive()).startswith(b"HTTP/1.1 200")


def closed(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("toolworker_http_connections_closed_total",
                                              {"reason": reason})
    return float(value or 0)


def no_traceback(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("head", [watch_head(), WEBHOOK_HEAD], ids=["watch", "webhook"])
async def test_a_body_that_does_not_decode_is_a_counted_throttled_400(
    served: Served, head: bytes, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Content-Encoding: deflate over bytes that do not inflate: a 500 and ~100 lines of
    traceback per request, unthrottled, even unauthenticated on the webhook endpoint."""
    answers = [await served.send(head + b"Content-Encoding: deflate\r\n", b"garbage")
               for _ in range(7)]
    assert [status for status, _ in answers] == [400] * 5 + [429] * 2
    assert "error" in json.loads(answers[0][1])
    assert refused(served.metrics, "bad_request") == 5
    no_traceback(caplog, capfd)
    assert served.seen == []


@pytest.mark.parametrize("head", [watch_head(), WEBHOOK_HEAD], ids=["watch", "webhook"])
async def test_a_client_gone_mid_body_is_counted_without_a_traceback(
    served: Served, head: bytes, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Content-Length: 100, nine bytes, then the client closes: aiohttp printed an "Error
    handling request" traceback (ConnectionResetError) for each."""
    for _ in range(2):
        async with await anyio.connect_tcp("127.0.0.1", served.server.port or 0) as stream:
            await stream.send(head + b"Content-Length: 100\r\n\r\n{\"thread_")
    await wait_for(lambda: closed(served.metrics, "malformed") == 2, timeout_s=5,
                   what="both cut-short requests counted")
    status, _ = await served.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert status == 200
    no_traceback(caplog, capfd)
    assert served.seen == []

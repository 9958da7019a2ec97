"""POST /v1/watch: ids from outside, refusals counted and logged at a bounded rate, throttling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker.config.secret import Secret
from worker.config.settings import ServerSettings
from worker.errors import WatchLimitReached, WatchStoreError
from worker.observability.metrics import INTAKE_REFUSALS, Metrics
from worker.service.intake import Refusals
from worker.service.server import FailureThrottle, Server
from worker.testing import capture_logs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

TOKEN = "watch-token-0123456789"
HOSTILE_IDS = ["../../../assistants", "a?b", "a&b", "thread_1/runs", "", " thread_1",
               "thread\n1", "%2e%2e", "t" * 129]


class Served:
    """A Server on loopback with a recording (or refusing) watch callable."""

    def __init__(self, server: Server, seen: list[tuple[str, str | None]]) -> None:
        self.server = server
        self.seen = seen

    async def post(self, body: object, token: str | None = TOKEN) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{self.server.port}/v1/watch", json=body, headers=headers
        ) as response:
            return response.status, await response.json(), response.headers

    def refused(self, reason: str) -> float:
        families = text_string_to_metric_families(self.server_metrics.exposition().decode())
        for family in families:
            for sample in family.samples:
                if sample.name == "toolworker_intake_refused_total" \
                        and sample.labels == {"reason": reason}:
                    return sample.value
        raise AssertionError(f"no toolworker_intake_refused_total{{reason={reason!r}}}")

    server_metrics: Metrics


@pytest.fixture
def serve() -> Callable[..., Any]:
    """serve(watch=None, **settings) -> an async context manager yielding a Served."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(watch: Callable[[str, str | None], Awaitable[None]] | None = None,
                    **settings: Any) -> AsyncIterator[Served]:
        seen: list[tuple[str, str | None]] = []
        metrics = Metrics()

        async def remember(thread_id: str, run_id: str | None) -> None:
            seen.append((thread_id, run_id))

        server = Server(
            ServerSettings(host="127.0.0.1", port=0, watch_token=Secret(TOKEN), **settings),
            metrics, lambda: (True, {}), watch=watch or remember,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            served = Served(server, seen)
            served.server_metrics = metrics
            yield served
            tg.cancel_scope.cancel()

    return start


class TestIds:
    async def test_a_valid_id_is_watched(self, serve: Any) -> None:
        """A thread and run id shaped like the API's are passed to watch and answered 202."""
        async with serve() as served:
            status, body, _ = await served.post({"thread_id": "thread_abc", "run_id": "run_1"})
        assert (status, body) == (202, {"watching": "thread_abc", "run_id": "run_1"})
        assert served.seen == [("thread_abc", "run_1")]

    @pytest.mark.parametrize("bad", HOSTILE_IDS)
    @pytest.mark.parametrize("field", ["thread_id", "run_id"])
    async def test_an_id_no_api_issues_is_refused(self, serve: Any, field: str, bad: str) -> None:
        """Path tricks, query characters and oversized ids get 400 naming the field; none is watched."""
        body = {"thread_id": "thread_abc", field: bad}
        async with serve() as served:
            status, answer, _ = await served.post(body)
            assert served.refused("bad_id") == 1
        assert status == 400
        assert answer["error"].startswith(f"{field} ")
        assert "is not an id the API issues" in answer["error"]
        assert served.seen == []

    @pytest.mark.parametrize("body", [{"thread": "x"}, [1, 2], {"thread_id": 5},
                                      {"thread_id": "t", "run_id": 5}])
    async def test_a_body_of_the_wrong_shape_is_a_bad_request(self, serve: Any, body: object) -> None:
        """A body that is not {"thread_id": str} says what to send and counts as bad_request."""
        async with serve() as served:
            status, answer, _ = await served.post(body)
            assert served.refused("bad_request") == 1
        assert status == 400
        assert '{"thread_id": "thread_abc123"' in answer["error"]


class TestRefusals:
    async def test_a_full_worker_answers_429_with_the_reason(self, serve: Any) -> None:
        """WatchLimitReached from watch is a 429 naming [watch] max_threads, counted as full."""
        async def full(_thread_id: str, _run_id: str | None) -> None:
            raise WatchLimitReached(limit=3)

        async with serve(watch=full) as served:
            status, answer, _ = await served.post({"thread_id": "thread_abc"})
            assert served.refused("full") == 1
        assert status == 429
        assert "max_threads" in answer["error"]
        assert "3" in answer["error"]

    async def test_a_store_that_cannot_commit_answers_503_and_keeps_nothing(
        self, serve: Any
    ) -> None:
        """No 202 unless the announcement is stored: a failed store is a 503, retry later."""
        async def unavailable(_thread_id: str, _run_id: str | None) -> None:
            raise WatchStoreError("/state/watch.sqlite3", "disk I/O error")

        async with serve(watch=unavailable) as served:
            status, answer, _ = await served.post({"thread_id": "thread_abc"})
            assert served.refused("unavailable") == 1
            assert served.server.throttle.retry_after_s("127.0.0.1") is None
        assert status == 503
        assert "disk I/O error" in answer["error"]

    async def test_a_flood_of_wrong_tokens_is_counted_logged_once_and_throttled(
        self, serve: Any
    ) -> None:
        """60 wrong tokens: 5 are refused as auth, the rest get 429 + Retry-After; one log line."""
        with capture_logs() as logs:
            async with serve(watch_max_failures=5, watch_failure_window_s=60) as served:
                answers = [await served.post({"thread_id": "thread_x"}, token="guess")
                           for _ in range(60)]
                assert (served.refused("auth"), served.refused("throttled")) == (5, 55)
                # Even the right token waits out the window: the address is what is throttled.
                status, _, _ = await served.post({"thread_id": "thread_x"})
        statuses = [status for status, _, _ in answers]
        assert statuses == [401] * 5 + [429] * 55
        assert status == 429
        retry_after = int(answers[-1][2]["Retry-After"])
        assert 0 < retry_after <= 60
        lines = [e for e in logs if e["event"] == "watch requests refused"]
        # The first refusal at once; the rest summed into the line written at shutdown.
        assert [line["refused"] for line in lines] == [{"auth": 1}, {"auth": 4, "throttled": 56}]
        assert all(TOKEN not in str(line) and "guess" not in str(line) for line in lines)

    def test_every_reason_is_exported_before_the_first_refusal(self) -> None:
        """The refusal counter shows each reason at 0, so alerts see a series from the start."""
        text = Metrics().exposition().decode()
        for reason in INTAKE_REFUSALS:
            assert f'toolworker_intake_refused_total{{reason="{reason}"}} 0.0' in text

    def test_refusals_are_logged_at_most_once_an_interval(self) -> None:
        """A burst inside the interval is summed into the next line; flush writes it once due."""
        now = [100.0]
        refusals = Refusals(Metrics(), "http", interval_s=10, clock=lambda: now[0])
        with capture_logs() as logs:
            for _ in range(1000):
                refusals.refuse("auth", "missing or wrong bearer token", address="10.0.0.1")
            refusals.flush()
            now[0] += 10
            refusals.flush()
            refusals.flush()
        lines = [e["refused"] for e in logs if e["event"] == "watch requests refused"]
        assert lines == [{"auth": 1}, {"auth": 999}]
        assert refusals.total == {"auth": 1000}


class TestFailureThrottle:
    def test_an_address_is_let_in_again_after_its_window(self) -> None:
        """Past max_failures an address waits for the window's end, then starts afresh."""
        now = [0.0]
        throttle = FailureThrottle(3, 60, clock=lambda: now[0])
        for _ in range(3):
            assert throttle.retry_after_s("a") is None
            throttle.failed("a")
        now[0] = 20.5
        assert throttle.retry_after_s("a") == 40
        assert throttle.retry_after_s("b") is None
        now[0] = 61
        assert throttle.retry_after_s("a") is None

    def test_a_success_forgets_the_failures(self) -> None:
        """An address that gets it right is no longer counted against."""
        throttle = FailureThrottle(2, 60)
        throttle.failed("a")
        throttle.succeeded("a")
        throttle.failed("a")
        assert throttle.retry_after_s("a") is None

    def test_memory_is_bounded(self) -> None:
        """A flood from many addresses keeps only the most recent ones."""
        throttle = FailureThrottle(1, 60, max_addresses=100)
        for i in range(10_000):
            throttle.failed(f"10.0.{i // 256}.{i % 256}")
        assert len(throttle) == 100
        assert throttle.retry_after_s("10.0.39.15") is not None  # the last one is kept

    def test_zero_turns_throttling_off(self) -> None:
        """watch_max_failures = 0 never throttles."""
        throttle = FailureThrottle(0, 60)
        for _ in range(100):
            throttle.failed("a")
        assert throttle.retry_after_s("a") is None

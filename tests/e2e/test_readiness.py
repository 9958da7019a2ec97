"""Readiness tells the truth (#12.6): /readyz goes 503 naming what fails, and comes back.

``Health.window_s`` is at least 30 s from settings (``max(3 * idle_poll_interval_s, 30)``),
so these tests shorten it on the worker's ``health`` before it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest

from tests.conftest import make_settings, wait_for
from tests.redis_server import free_port
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.testing import capture_logs

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.redis_server import RedisServer
    from worker.simulator import Simulator

pytestmark = pytest.mark.e2e

WINDOW_S = 0.6


def make_worker(base_url: str, threads: tuple[str, ...] = (),
                **sections: dict[str, Any]) -> Worker:
    settings = make_settings(
        api={"base_url": base_url, "max_requests_per_s": 0, "max_retries": 0},
        watch={"threads": list(threads), "active_poll_interval_s": 0.02, "idle_poll_interval_s": 0.2},
        tools={"modules": ["tests.handlers.sample"]},
        server={"host": "127.0.0.1", "port": 0},
        **sections,
    )
    worker = Worker(settings, Registry.from_modules(settings.tools.modules))
    worker.health.window_s = WINDOW_S  # probes and pings every 0.2 s
    return worker


async def readyz_until(worker: Worker, wanted: Callable[[int, dict[str, Any]], bool],
                       timeout_s: float = 10.0) -> tuple[int, dict[str, Any]]:
    """GET /readyz until ``wanted(status, body)``; fail after ``timeout_s``."""
    assert worker.server is not None
    url = f"http://127.0.0.1:{worker.server.port}/readyz"
    seen: tuple[int, dict[str, Any]] = (0, {})
    async with aiohttp.ClientSession() as session:
        with anyio.move_on_after(timeout_s):
            while True:
                async with session.get(url) as response:
                    seen = (response.status, await response.json())
                if wanted(*seen):
                    return seen
                await anyio.sleep(0.05)
    raise AssertionError(f"/readyz never became what was wanted in {timeout_s} s: {seen}")


async def test_a_redis_that_goes_down_makes_the_worker_unready(
    sim: Simulator, redis_server: RedisServer
) -> None:
    """Redis stops: /readyz is 503 naming the coordination store; Redis back: 200 again."""
    worker = make_worker(sim.base_url,
                         coordination={"backend": "redis", "redis_url": redis_server.url})
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await readyz_until(worker, lambda status, _: status == 200)
        redis_server.stop()
        started = anyio.current_time()
        _, body = await readyz_until(worker, lambda status, _: status == 503)
        down_s = anyio.current_time() - started
        redis_server.start()
        await readyz_until(worker, lambda status, _: status == 200)
        worker.stop()
    assert body["reason"] == "a dependency does not answer"
    assert "coordination" in body["dependencies"]
    assert "redis_url" in body["dependencies"]["coordination"]
    assert down_s < 5 * WINDOW_S


async def test_an_intake_stream_that_goes_down_makes_the_worker_unready(
    sim: Simulator, redis_server: RedisServer
) -> None:
    """The Redis of the intake stream stops: /readyz is 503 naming the intake; back: 200."""
    worker = make_worker(sim.base_url,
                         intake={"redis_stream": True, "redis_url": redis_server.url})
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await readyz_until(worker, lambda status, _: status == 200)
        redis_server.stop()
        _, body = await readyz_until(worker, lambda status, _: status == 503)
        redis_server.start()
        await readyz_until(worker, lambda status, _: status == 200)
        worker.stop()
    assert body["reason"] == "a dependency does not answer"
    assert "the intake stream" in body["dependencies"]["intake"]


async def test_an_unreachable_api_makes_the_worker_unready_from_the_start() -> None:
    """No thread watched and nothing listening at base_url: 503 from the first request on
    (not only once the window has passed), the API has not answered yet, with the connection
    error that says why."""
    port = free_port()
    worker = make_worker(f"http://127.0.0.1:{port}/v1")
    worker.health.window_s = 3600.0  # the window alone would call it ready for an hour
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        status, body = await readyz_until(worker, lambda _status, _body: True)
        worker.stop()
    assert status == 503
    assert body["reason"] == "the API has not answered yet"
    assert f"cannot connect to 127.0.0.1:{port}" in body["error"]


async def test_a_worker_whose_api_answers_is_ready(sim: Simulator) -> None:
    """The other side of the above: one answer from the API (a 404 for the probe) is enough."""
    worker = make_worker(sim.base_url)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        status, _ = await readyz_until(worker, lambda status, _: status == 200)
        worker.stop()
    assert status == 200


async def test_a_host_that_does_not_resolve_is_named_in_readiness_and_logged_once() -> None:
    """base_url on nonexistent.invalid: /readyz says so, and the error line is written once
    however many probes meet it."""
    worker = make_worker("http://nonexistent.invalid/v1")
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            _, body = await readyz_until(
                worker, lambda status, body: status == 503 and worker.metrics.registry
                .get_sample_value("toolworker_api_errors_total",
                                  {"endpoint": "list_runs", "kind": "dns"}) >= 3)
            worker.stop()
    assert body["reason"] == "the API has not answered yet"
    assert "cannot resolve the host nonexistent.invalid" in body["error"]
    loud = [e for e in logs if e["event"] == "the API cannot be reached until this is fixed"]
    assert len(loud) == 1


async def test_a_key_refused_for_one_thread_neither_flaps_readiness_nor_the_log(
    sim: Simulator,
) -> None:
    """The key reads thread A but not B: one error line, no "answers again" pairs, ready;
    refused for A too, the worker is not ready."""
    good, refused = sim.create_thread(), sim.create_thread()
    sim.refuse_key_for(refused)
    worker = make_worker(sim.base_url, (good, refused))
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            statuses = []
            for _ in range(10):  # polls of both threads, interleaved, while /readyz is read
                before = sim.request_counts["list_runs"]
                status, _ = await readyz_until(worker, lambda *_: True)
                statuses.append(status)
                await wait_for(lambda b=before: sim.request_counts["list_runs"] >= b + 2)
            sim.refuse_key_for(good)
            _, body = await readyz_until(worker, lambda status, _: status == 503)
            worker.stop()
    assert set(statuses) == {200}
    assert body["reason"] == "the API refuses the key"
    events = [e["event"] for e in logs]
    assert events.count("the API refused the key") == 1
    assert "the thread answers again" not in events

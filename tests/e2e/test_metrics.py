"""The daemon's /metrics, /healthz and /readyz, scraped over HTTP and parsed by a real parser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServedApp, make_settings, wait_for
from tests.e2e.conftest import calls, start_runs
from worker.daemon import Worker
from worker.handlers.registry import Registry

if TYPE_CHECKING:
    from worker.simulator import Simulator

pytestmark = pytest.mark.e2e


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def worker_for(base_url: str, threads: list[str], **watch: Any) -> Worker:
    settings = make_settings(
        api={"base_url": base_url, "max_retries": 0},
        watch={"threads": threads, "active_poll_interval_s": 0.02, "idle_poll_interval_s": 0.05,
               **watch},
        tools={"modules": ["tests.handlers.sample"]},
        server={"host": "127.0.0.1", "port": 0},
    )
    return Worker(settings, Registry.from_modules(settings.tools.modules))


async def get(session: aiohttp.ClientSession, worker: Worker, path: str) -> tuple[int, str]:
    assert worker.server is not None
    async with session.get(f"http://127.0.0.1:{worker.server.port}{path}") as response:
        return response.status, await response.text()


async def test_counters_move_by_exactly_the_work_done(sim: Simulator) -> None:
    """After four runs of two rounds, every counter says exactly what was done."""
    script = [calls(("add", {"a": 1}), ("add", "{bad json"), ("boom", {})),
              calls(("nap", {"seconds": 0.01}), ("missing_tool", {}))]
    threads, _ = start_runs(sim, [script] * 4)
    worker = worker_for(sim.base_url, threads)
    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as session:
        await tg.start(worker.run)
        scraped: dict[Any, float] = {}

        async def all_rounds_counted() -> bool:
            nonlocal scraped
            status, text = await get(session, worker, "/metrics")
            assert status == 200
            scraped = samples(text)
            return scraped.get(("toolworker_rounds_submitted_total", (("outcome", "ok"),))) == 8

        await wait_for(all_rounds_counted, timeout_s=20, what="8 rounds in /metrics")
        worker.stop()

    def value(name: str, **labels: str) -> float | None:
        return scraped.get((name, tuple(sorted(labels.items()))))

    calls_total = "toolworker_tool_calls_total"
    assert value(calls_total, tool="add", outcome="ok") == 4
    assert value(calls_total, tool="add", outcome="invalid_arguments") == 4
    assert value(calls_total, tool="boom", outcome="error") == 4
    assert value(calls_total, tool="nap", outcome="ok") == 4
    assert value(calls_total, tool="(unknown)", outcome="unknown_tool") == 4
    assert value("toolworker_tool_call_duration_seconds_count", tool="nap") == 4
    assert value("toolworker_round_latency_seconds_count") == 8
    assert value("toolworker_api_requests_total", endpoint="submit_tool_outputs",
                 status="2xx") == 8
    assert value("toolworker_watched_threads") == 4
    assert value("toolworker_tool_calls_in_flight") == 0
    assert value("toolworker_build_info", version=worker_version()) == 1
    assert sim.request_counts["submit_tool_outputs"] == 8
    for (name, labels) in scraped:
        assert not any(key in ("thread_id", "run_id", "tool_call_id") for key, _ in labels), name


def worker_version() -> str:
    from importlib.metadata import version

    return version("tool-worker")


async def test_health_and_readiness(sim: Simulator) -> None:
    """/healthz says alive; /readyz says ready while running and not ready while draining."""
    threads, runs = start_runs(sim, [[calls(("nap", {"seconds": 2}))]])
    worker = worker_for(sim.base_url, threads)
    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as session:
        await tg.start(worker.run)
        assert await get(session, worker, "/healthz") == (200, '{"status": "alive"}')
        status, body = await get(session, worker, "/readyz")
        assert status == 200
        assert '"status": "ready"' in body
        _, text = await get(session, worker, "/metrics")
        assert samples(text)[("toolworker_ready", ())] == 1
        await wait_for(lambda: worker.metrics.in_flight_calls._value.get() == 1, what="a call")
        worker.stop()  # the nap keeps the worker draining for a while
        status, body = await get(session, worker, "/readyz")
        assert status == 503
        assert "draining" in body
    assert len(sim.accepted_submissions(runs[0])) == 1, "the round in flight was finished"


async def test_not_ready_while_the_api_refuses_the_key() -> None:
    """A key refused after start (revoked) makes /readyz answer 503 and say why."""

    answered: list[int] = []

    async def runs(request: web.Request) -> web.Response:
        if not answered:  # the check at start passes; the key is revoked after it
            answered.append(1)
            return web.json_response({"object": "list", "data": [], "has_more": False})
        return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)

    app = web.Application()
    app.router.add_get("/v1/threads/{thread_id}/runs", runs)
    async with ServedApp(app) as api, aiohttp.ClientSession() as session:
        worker = worker_for(f"{api.url}/v1", ["thread_a"], idle_poll_interval_s=0.01)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_for(lambda: (worker.metrics.registry.get_sample_value(
                "toolworker_api_errors_total", {"endpoint": "list_runs", "kind": "auth"}) or 0) >= 3,
                           what="three refused polls")
            status, body = await get(session, worker, "/readyz")
            _, text = await get(session, worker, "/metrics")
            worker.stop()
    assert status == 503
    assert "the API refuses the key" in body
    scraped = samples(text)
    assert scraped[("toolworker_ready", ())] == 0
    assert scraped[("toolworker_api_errors_total", (("endpoint", "list_runs"), ("kind", "auth")))] >= 3

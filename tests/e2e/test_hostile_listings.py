"""Listings that never end, or hold far more than asked: cut, counted, and polls go on.

Issue #25: an Azure thread listing that always says ``has_more`` and ignores ``after`` gave
3,800 listing requests in 20 s and no run polls, with ``/readyz`` 200. Here a gateway in front
of the simulator (azure profile) answers every listing that way; the worker must cut the walk,
count a bad answer, show the listing in ``/readyz``'s reasons, and still answer every round.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.conftest import make_settings, wait_for
from tests.e2e.conftest import calls, start_runs
from tests.e2e.proxy import Act, Proxy, endpoint_of
from worker.config.secret import Secret
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.rounds.discovery import DEPENDENCY
from worker.simulator import Simulator

if TYPE_CHECKING:
    from aiohttp import web

pytestmark = pytest.mark.e2e

KEY = "azure-test-key-123456"
SCRIPT = [calls(("add", {"a": 1})), calls(("add", {"a": 2}))]


def api_errors(worker: Worker, endpoint: str, kind: str) -> float:
    value = worker.metrics.registry.get_sample_value(
        "toolworker_api_errors_total", {"endpoint": endpoint, "kind": kind})
    return value or 0.0


def discovering_worker(base_url: str, **watch: Any) -> Worker:
    settings = make_settings(
        api={"base_url": base_url, "backend": "azure", "azure_auth": "api_key",
             "max_requests_per_s": 0},
        watch={"discover": True, "discover_interval_s": 0.2, "active_poll_interval_s": 0.02,
               "idle_poll_interval_s": 0.1, **watch},
        tools={"modules": ["tests.handlers.sample"]},
        server={"enabled": False},
    ).model_copy(update={"api_key": Secret(KEY)})
    return Worker(settings, Registry.from_modules(settings.tools.modules))


def endless_page(threads: list[str]) -> Any:
    """The same page whatever ``after`` says, always with has_more."""
    body = json.dumps({"object": "list", "has_more": True,
                       "data": [{"id": t, "object": "thread"} for t in threads]}).encode()

    def rule(request: web.Request) -> Act | None:
        return Act("answer", body=body) if endpoint_of(request) == "list_threads" else None

    return rule


async def test_a_listing_that_ignores_after_is_cut_and_rounds_are_answered() -> None:
    """Two listing requests per pass, not thousands; a counted bad answer; /readyz's reasons
    name the listing; every round of the listed threads is answered."""
    async with Simulator(api_key=KEY, profile="azure") as sim, Proxy(sim) as proxy:
        threads, runs = start_runs(sim, [SCRIPT] * 3)
        proxy.rule = endless_page(threads)
        worker = discovering_worker(proxy.url)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await wait_for(lambda: all(sim.run(r)["status"] == "completed" for r in runs),
                           timeout_s=30, what="every round of the listed threads")
            ready, reasons = worker.health.readiness()
            worker.stop()
    bad = api_errors(worker, "list_threads", "bad_answer")
    assert bad >= 1
    # Each pass reads two pages (the second shows the cursor did not move), counts one bad
    # answer and stops; the start's access check and health probes add one request each.
    assert proxy.seen["list_threads"] <= 2 * bad + 5
    assert not ready
    assert DEPENDENCY in reasons["dependencies"]
    assert "does not follow 'after'" in reasons["dependencies"][DEPENDENCY]


async def test_a_listing_that_moves_on_for_ever_is_read_a_few_pages_at_a_time() -> None:
    """A cursor that always moves, to ever new threads: at most discover_max_pages pages per
    interval; the worker's polls of the real threads go on."""
    async with Simulator(api_key=KEY, profile="azure") as sim, Proxy(sim) as proxy:
        threads, runs = start_runs(sim, [SCRIPT] * 2)
        counter = iter(range(10**9))

        def rule(request: web.Request) -> Act | None:
            if endpoint_of(request) != "list_threads":
                return None
            page = [*threads, *(f"thread_fake{next(counter)}" for _ in range(3))]
            page = page[: int(request.query.get("limit", "100"))]
            return Act("answer", body=json.dumps({"has_more": True, "data": [
                {"id": t} for t in page]}).encode())

        proxy.rule = rule
        worker = discovering_worker(proxy.url, discover_max_pages=4, discover_interval_s=30)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await wait_for(lambda: all(sim.run(r)["status"] == "completed" for r in runs),
                           timeout_s=30, what="every round of the real threads")
            ready, reasons = worker.health.readiness()
            worker.stop()
    # The first pass only (the next is 30 s away), plus the start's access check.
    assert proxy.seen["list_threads"] <= 4 + 1
    assert ready, reasons
    assert api_errors(worker, "list_threads", "bad_answer") == 0

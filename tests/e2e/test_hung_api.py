"""A hung API (#13.6): polls that never answer do not starve healthy threads, and /readyz
tells the truth within Health.window_s."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import aiohttp
import anyio
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import (
    SIM_KEY,
    assert_each_round_submitted_once,
    calls,
    make_worker,
    start_runs,
)
from tests.e2e.proxy import Act, Proxy
from worker.simulator import Simulator

if TYPE_CHECKING:
    from aiohttp import web

    from worker.daemon import Worker

pytestmark = pytest.mark.e2e

HUNG_THREADS = 70  # more than max_concurrent_polls (64): they fill every idle poll slot
POLL_TIMEOUT_S = 2.0
# Longer than a hung poll holds its slot, so a healthy idle thread always gets a look in;
# set on Health directly, since the daemon keeps it at least 30 s for production.
WINDOW_S = 3.0
SCRIPT = [calls(("add", {"a": r}), ("nap", {"seconds": 0.01})) for r in range(4)]


def thread_of(request: web.Request) -> str | None:
    parts = request.path.split("/")  # /v1/threads/<thread_id>/...
    return parts[3] if len(parts) > 3 and parts[2] == "threads" else None


async def readyz(session: aiohttp.ClientSession, worker: Worker) -> int:
    assert worker.server is not None
    async with session.get(f"http://127.0.0.1:{worker.server.port}/readyz") as response:
        return response.status


async def test_hung_polls_do_not_stop_healthy_rounds_and_readiness_follows_the_api() -> None:
    """70 threads whose polls hang forever beside 3 healthy threads with 4-round runs: every
    healthy round is answered in bounded time and /readyz stays 200 meanwhile; once every
    request hangs, /readyz says 503 within about window_s."""
    everything_hangs = False
    async with (
        Simulator(api_key=SIM_KEY, thinking_s=0.05) as sim,
        Proxy(sim) as proxy,
        aiohttp.ClientSession() as session,
    ):
        hung = {sim.create_thread() for _ in range(HUNG_THREADS)}

        def rule(request: web.Request) -> Act | None:
            return Act("hang") if everything_hangs or thread_of(request) in hung else None

        proxy.rule = rule
        healthy, runs = start_runs(sim, [SCRIPT] * 3)
        # One healthy thread first (the start check reads the first thread), the others last:
        # they wait behind the hung polls for an idle slot.
        threads = [healthy[0], *sorted(hung), *healthy[1:]]
        worker = make_worker(
            proxy.url, threads, api={"request_timeout_s": 5.0},
            watch={"poll_timeout_s": POLL_TIMEOUT_S, "idle_poll_interval_s": 0.2},
            server={"host": "127.0.0.1", "port": 0},
        )
        worker.health.window_s = WINDOW_S
        statuses: list[int] = []
        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                started = time.monotonic()
                while not all(sim.run(run_id)["status"] == "completed" for run_id in runs):
                    statuses.append(await readyz(session, worker))
                    await anyio.sleep(0.05)
                healthy_s = time.monotonic() - started
                everything_hangs = True
                hung_since = time.monotonic()
                await wait_for(lambda: worker.health.readiness()[0] is False,
                               timeout_s=WINDOW_S + 5, what="not ready")
                unready_after_s = time.monotonic() - hung_since
                assert await readyz(session, worker) == 503
                worker.stop()
                proxy.release.set()
        assert_each_round_submitted_once(sim, runs, [4, 4, 4])
    assert proxy.seen["list_runs"] >= HUNG_THREADS
    # The last healthy threads wait once for an idle poll slot (a hung poll's timeout); after
    # that no hung poll may hold a connection their rounds need (it did: 6 s, 32 s by default).
    assert healthy_s < POLL_TIMEOUT_S + 2.0, "healthy rounds flowed beside the hung polls"
    assert statuses
    assert set(statuses) == {200}, "ready while healthy answers arrived"
    assert unready_after_s < WINDOW_S + 2

"""Work added at run time: POST /v1/watch, and the API's polling hints."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest

from tests.conftest import make_settings, wait_for
from tests.e2e.conftest import SIM_KEY, assert_each_round_submitted_once, calls, start_runs
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.simulator import Simulator

pytestmark = pytest.mark.e2e

TOKEN = "watch-token-0123456789"


def worker_for(sim: Simulator, threads: list[str], **server: Any) -> Worker:
    settings = make_settings(
        api={"base_url": sim.base_url, "max_requests_per_s": 0},
        watch={"threads": threads, "active_poll_interval_s": 0.02, "idle_poll_interval_s": 0.2},
        tools={"modules": ["tests.handlers.sample"]},
        server={"host": "127.0.0.1", "port": 0, **server},
    )
    return Worker(settings, Registry.from_modules(settings.tools.modules))


async def post(worker: Worker, body: object, token: str | None = TOKEN) -> tuple[int, Any]:
    assert worker.server is not None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{worker.server.port}/v1/watch", json=body, headers=headers
    ) as response:
        return response.status, await response.json()


async def test_a_thread_posted_to_watch_is_answered() -> None:
    """POST /v1/watch with the token adds a thread; its run's rounds are submitted."""
    async with Simulator(api_key=SIM_KEY) as sim:
        threads, runs = start_runs(sim, [[calls(("add", {"a": 1})), calls(("add", {"a": 2}))]])
        worker = worker_for(sim, [], watch_token=TOKEN)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            status, body = await post(worker, {"thread_id": threads[0], "run_id": runs[0]})
            assert (status, body) == (202, {"watching": threads[0], "run_id": runs[0]})
            await wait_for(lambda: sim.run(runs[0])["status"] == "completed", what="the run")
            worker.stop()
        assert_each_round_submitted_once(sim, runs, [2])


@pytest.mark.parametrize(
    ("body", "token", "status", "message"),
    [
        ({"thread_id": "thread_x"}, "wrong-token", 401, "wrong bearer token"),
        ({"thread_id": "thread_x"}, None, 401, "wrong bearer token"),
        ({"thread": "x"}, TOKEN, 400, "thread_id must be"),
        ({"thread_id": ""}, TOKEN, 400, "thread_id '' is not an id the API issues"),
        ({"thread_id": "../../../assistants"}, TOKEN, 400, "is not an id the API issues"),
        ({"thread_id": "t", "run_id": 5}, TOKEN, 400, "run_id"),
        ([1, 2], TOKEN, 400, "thread_id must be"),
    ],
)
async def test_bad_watch_requests_are_refused_clearly(
    body: object, token: str | None, status: int, message: str
) -> None:
    """A wrong token or body gets its status and a message saying what is expected."""
    async with Simulator(api_key=SIM_KEY) as sim:
        worker = worker_for(sim, [], watch_token=TOKEN)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            answer = await post(worker, body, token)
            worker.stop()
    assert answer[0] == status
    assert message in answer[1]["error"]
    assert TOKEN not in str(answer[1])


async def test_watch_is_off_without_a_token() -> None:
    """Without [server] watch_token the endpoint answers 404 and says how to enable it."""
    async with Simulator(api_key=SIM_KEY) as sim:
        worker = worker_for(sim, [])
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            status, body = await post(worker, {"thread_id": "thread_x"})
            worker.stop()
    assert status == 404
    assert "watch_token" in body["error"]


async def test_polling_follows_the_apis_hint() -> None:
    """With the API's poll-after hints, a thinking run is read a few times, not every 20 ms."""
    async with Simulator(api_key=SIM_KEY, thinking_s=0.4) as sim:
        threads, runs = start_runs(sim, [[calls(("add", {"a": 1}))] for _ in range(3)])
        worker = worker_for(sim, threads)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_for(sim.all_runs_terminal, what="every run")
            worker.stop()
        assert_each_round_submitted_once(sim, runs, [1, 1, 1])
        # Two thinking phases of 0.4 s a run: at 20 ms that would be about 40 reads a run.
        reads = sim.request_counts["retrieve_run"] + sim.request_counts["list_runs"]
        assert reads <= 3 * 12, reads

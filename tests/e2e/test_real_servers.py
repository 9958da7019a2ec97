"""Other servers' habits (#13): every simulator quirk end to end, the SDK beside the worker,
and the start check on servers that lack an endpoint."""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

import anyio
import openai
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import (
    SIM_KEY,
    assert_each_round_submitted_once,
    calls,
    make_worker,
    run_worker,
    start_runs,
)
from tests.e2e.process import Daemon, write_config
from tests.e2e.proxy import Act, Proxy, endpoint_of
from worker.errors import ConfigError
from worker.simulator import QUIRKS, Simulator

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from aiohttp import web
    from openai.types.beta.threads import Run

pytestmark = pytest.mark.e2e

# The simulator's clock runs this many times slower than real time, from a whole second on:
# every run of a test is created in the same second however slow the machine, and a model
# that "thinks" SIM_THINKING_S takes SIM_THINKING_S * SLOWDOWN real seconds.
SLOWDOWN = 100
SIM_THINKING_S = 0.001


def same_second_clock() -> Callable[[], float]:
    """Epoch seconds that stay inside one whole second for SLOWDOWN real seconds."""
    start, began = math.floor(time.time()), time.monotonic()
    return lambda: start + (time.monotonic() - began) / SLOWDOWN


SERVERS = [
    *(pytest.param({"quirks": {quirk}}, id=quirk) for quirk in QUIRKS),
    pytest.param({"quirks": set(QUIRKS)}, id="all-quirks"),
    pytest.param({"poll_hints": "off"}, id="no-poll-hints"),
    pytest.param({"poll_hints": "coarse"}, id="coarse-poll-hints"),
    pytest.param({"quirks": set(QUIRKS), "poll_hints": "off"}, id="all-quirks-no-poll-hints"),
]

THREE_ROUNDS = [calls(("add", {"a": r}), ("weather", {"city": "Oslo"})) for r in range(3)]
TWO_ROUNDS = [calls(("add", {"a": 10})), calls(("add", {"a": 20}), ("describe", {}))]


@pytest.mark.parametrize("server", SERVERS)
async def test_every_round_once_on_each_kind_of_server(server: dict[str, Any]) -> None:
    """Multi-round runs on four threads, and a thread whose next run is created in the same
    second its previous run completed: each round is submitted once and every run completes.

    Under list_order_by_second the new run is listed after the finished one; a worker that
    read only the newest run (limit=1) never saw it.
    """
    async with Simulator(api_key=SIM_KEY, seed=3, thinking_s=SIM_THINKING_S,
                         clock=same_second_clock(), **server) as sim:
        threads, runs = start_runs(sim, [THREE_ROUNDS] * 4 + [TWO_ROUNDS])
        worker = make_worker(sim.base_url, threads)
        with anyio.fail_after(25):
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                first = runs[-1]
                await wait_for(lambda: sim.run(first)["status"] == "completed",
                               what="the first run of the last thread")
                rerun = sim.create_run(threads[-1], sim.run(first)["assistant_id"],
                                       rounds=TWO_ROUNDS)
                created = [sim.run(run_id)["created_at"] for run_id in (first, rerun)]
                assert math.floor(created[0]) == math.floor(created[1]), "the same second"
                await wait_for(sim.all_runs_terminal, timeout_s=20, what="every run to end")
                worker.stop()
        assert_each_round_submitted_once(sim, [*runs, rerun], [3, 3, 3, 3, 2, 2])
    ok = worker.metrics.registry.get_sample_value("toolworker_rounds_submitted_total",
                                                  {"outcome": "ok"})
    assert ok == 4 * 3 + 2 + 2


@pytest.mark.parametrize("server", [
    pytest.param({"quirks": set(QUIRKS)}, id="all-quirks"),
    pytest.param({"quirks": set(QUIRKS), "poll_hints": "off"}, id="all-quirks-no-poll-hints"),
])
# The SDK marks every Assistants method deprecated.
@pytest.mark.filterwarnings(
    "ignore:The Assistants API is deprecated in favor of the Responses API:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:deprecated$:DeprecationWarning")
async def test_the_official_sdk_drives_runs_the_worker_answers(server: dict[str, Any]) -> None:
    """openai.AsyncOpenAI creates threads and runs on a quirky server; the worker answers every
    round, and the SDK sees each run complete."""
    script = [[{"name": "add", "arguments": json.dumps({"a": 1})},
               {"name": "weather", "arguments": json.dumps({"city": "Paris"})}],
              [{"name": "add", "arguments": json.dumps({"a": 2})}]]
    async with (
        Simulator(api_key=SIM_KEY, seed=5, **server) as sim,
        openai.AsyncOpenAI(api_key=SIM_KEY, base_url=sim.base_url, max_retries=0) as sdk,
    ):
        assistant = await sdk.beta.assistants.create(model="gpt-4o", name="sdk")
        threads = [(await sdk.beta.threads.create()).id for _ in range(3)]
        worker = make_worker(sim.base_url, threads)
        with anyio.fail_after(25):
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                runs = [await sdk.beta.threads.runs.create(
                    thread_id, assistant_id=assistant.id,
                    metadata={"sim_rounds": json.dumps(script)}) for thread_id in threads]
                finished = [await until_over(sdk, run) for run in runs]
                worker.stop()
        assert [run.status for run in finished] == ["completed"] * 3
        assert_each_round_submitted_once(sim, [run.id for run in runs], [2, 2, 2])
        outputs = [s.tool_outputs for s in sim.accepted_submissions(runs[0].id)]
    assert [[text for _, text in round_] for round_ in outputs] == [
        ["2", '{"city":"Paris","temperature":21,"unit":"c"}'], ["3"]]


async def until_over(sdk: openai.AsyncOpenAI, run: Run) -> Run:
    """The run once it is over, read by the SDK (whose own poll() stops at requires_action)."""
    while run.status not in ("completed", "failed", "cancelled", "expired", "incomplete"):
        await anyio.sleep(0.02)
        run = await sdk.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
    return run


def refuse(endpoint: str, method: str = "GET") -> Callable[[web.Request], Act | None]:
    """A proxy rule: 404 (as a server without the endpoint says) for this endpoint only."""
    body = json.dumps({"error": {"message": "Not Found", "type": "invalid_request_error"}})

    def rule(request: web.Request) -> Act | None:
        if endpoint_of(request) == endpoint and request.method == method:
            return Act("answer", 404, body.encode())
        return None

    return rule


async def test_a_server_without_the_assistants_listing_is_served() -> None:
    """GET /assistants answers 404 (a gateway that serves only threads and runs): the worker
    starts, never asks for it, and answers every round."""
    async with Simulator(api_key=SIM_KEY) as sim, Proxy(sim) as proxy:
        proxy.rule = refuse("assistants")
        threads, runs = start_runs(sim, [THREE_ROUNDS] * 2)
        worker = await run_worker(sim, threads, api={"base_url": proxy.url})
        assert_each_round_submitted_once(sim, runs, [3, 3])
    assert proxy.seen["assistants"] == 0
    assert worker.metrics.registry.get_sample_value(
        "toolworker_rounds_submitted_total", {"outcome": "ok"}) == 6


def azure_discover_config(proxy: Proxy) -> dict[str, Any]:
    return {"base_url": proxy.url, "backend": "azure",
            "azure_auth": "api_key"}


async def test_discovery_on_a_server_without_the_thread_listing_stops_the_worker() -> None:
    """With discover = true on azure, a 404 on GET /threads is a ConfigError at start."""
    async with (
        Simulator(api_key=SIM_KEY, profile="azure") as sim,
        Proxy(sim) as proxy,
    ):
        proxy.rule = refuse("list_threads")
        worker = make_worker(sim.base_url, [], api=azure_discover_config(proxy),
                             watch={"discover": True})
        with anyio.fail_after(10), pytest.raises(ConfigError, match="thread listing"):
            await worker.run(until_idle=True)
    assert proxy.seen["list_threads"] == 1


async def test_the_cli_exits_2_when_the_thread_listing_is_missing(tmp_path: Path) -> None:
    """The same refusal through `tool-worker run`: one line naming api.base_url, exit 2."""
    async with (
        Simulator(api_key=SIM_KEY, profile="azure") as sim,
        Proxy(sim) as proxy,
    ):
        proxy.rule = refuse("list_threads")
        config = write_config(tmp_path / "w.toml", sim, [], api=azure_discover_config(proxy),
                              watch={"discover": True})
        daemon = await Daemon.start(config)
        try:
            assert await daemon.wait(timeout_s=20) == 2
        finally:
            await daemon.aclose()
    assert b"thread listing" in daemon.raw
    assert b"api.base_url" in daemon.raw

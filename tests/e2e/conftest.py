"""End-to-end fixtures: the simulator on loopback and the real Worker against it."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.conftest import make_settings
from tests.redis_server import RedisServer
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.simulator import Simulator, ToolCallScript

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

SIM_KEY = "sk-test"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(api_key=SIM_KEY, seed=1) as simulator:
        yield simulator


def calls(*pairs: tuple[str, Any]) -> list[ToolCallScript]:
    """One round of scripted calls; dict arguments are JSON-encoded, strings kept raw."""
    return [
        ToolCallScript(name, args if isinstance(args, str) else json.dumps(args))
        for name, args in pairs
    ]


def start_runs(sim: Simulator, scripts: Sequence[list[list[ToolCallScript]]],
               **run_options: Any) -> tuple[list[str], list[str]]:
    """One thread and one run per script; returns (thread ids, run ids)."""
    assistant_id = sim.create_assistant(name="test", tools=[])
    threads, runs = [], []
    for script in scripts:
        thread_id = sim.create_thread()
        runs.append(sim.create_run(thread_id, assistant_id, rounds=script, **run_options))
        threads.append(thread_id)
    return threads, runs


def make_worker(base_url: str, threads: Sequence[str], *,
                modules: Sequence[str] = ("tests.handlers.sample",),
                **sections: dict[str, Any]) -> Worker:
    """A Worker for the API at ``base_url`` with fast test polling; sections override."""
    watch = {"threads": list(threads), "active_poll_interval_s": 0.02,
             "idle_poll_interval_s": 0.2, "store": "memory", **sections.pop("watch", {})}
    settings = make_settings(
        api={"base_url": base_url, "max_requests_per_s": 0, **sections.pop("api", {})},
        watch=watch,
        tools={"modules": list(modules), **sections.pop("tools", {})},
        server=sections.pop("server", {"enabled": False}),
        **sections,
    )
    return Worker(settings, Registry.from_modules(settings.tools.modules))


async def run_worker(sim: Simulator, threads: Sequence[str], *, timeout_s: float = 30,
                     modules: Sequence[str] = ("tests.handlers.sample",),
                     **sections: dict[str, Any]) -> Worker:
    """Run a Worker until no watched thread has an active run; fail past ``timeout_s``."""
    worker = make_worker(sim.base_url, threads, modules=modules, **sections)
    with anyio.fail_after(timeout_s):
        await worker.run(until_idle=True)
    return worker


def assert_each_round_submitted_once(sim: Simulator, runs: Sequence[str],
                                     rounds_per_run: Sequence[int]) -> None:
    """Every round of every run has exactly one accepted submission, and nothing was refused."""
    for run_id, rounds in zip(runs, rounds_per_run, strict=True):
        accepted = Counter(s.round_index for s in sim.accepted_submissions(run_id))
        assert accepted == Counter(range(rounds)), run_id
        assert sim.run(run_id)["status"] == "completed", run_id
    refused = [s for s in sim.submissions if s.status != 200]
    assert refused == []


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh, private Redis for one test (sync fixture: it starts before the loop runs)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()

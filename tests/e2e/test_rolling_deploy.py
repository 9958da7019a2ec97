"""A rolling deploy: three replicas on a real Redis restarted one after another while runs go on.

Each replica is stopped with SIGTERM (it drains and leaves the members), and a new one starts
with the same config before the next is stopped, as a Deployment's rolling update does. Ten new
runs of three rounds start before each restart, so every stop lands among rounds in flight.
Nothing may be lost or doubled: every round of the 30 runs is accepted once, and every tool call
is answered by one handler run in all the replicas' logs together (a drain finishes what it has
taken and takes nothing new).
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import SIM_KEY, assert_each_round_submitted_once, calls
from tests.e2e.process import Daemon, write_config
from worker.simulator import Simulator, ToolCallScript

if TYPE_CHECKING:
    from pathlib import Path

    from anyio.abc import TaskGroup

    from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROUNDS, WAVES, RUNS_PER_WAVE = 3, 3, 10


def script(index: int) -> list[list[ToolCallScript]]:
    return [calls(("nap", {"seconds": 0.2}), ("add", {"a": index, "b": r}))
            for r in range(ROUNDS)]


async def start_replica(config: Path, tg: TaskGroup) -> Daemon:
    """A replica whose log is read as it comes (a full pipe would stall it), once it has joined
    the other two."""
    replica = await Daemon.start(config, TOOL_WORKER__LOGGING__LEVEL="debug")
    await replica.wait_for_line(
        lambda line: line.get("event") == "replicas changed" and line["members"] == 3,
        "3 replicas", timeout_s=60)
    tg.start_soon(replica.drain)
    return replica


async def test_a_rolling_restart_of_three_replicas_loses_and_doubles_nothing(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with Simulator(api_key=SIM_KEY, thinking_s=0.3) as sim:
        assistant_id = sim.create_assistant(name="test", tools=[])
        threads = [sim.create_thread() for _ in range(WAVES * RUNS_PER_WAVE)]
        configs = [write_config(
            tmp_path / f"r{i}.toml", sim, threads,
            coordination={"backend": "redis", "redis_url": redis_server.url, "lease_s": 2.0,
                          "key_prefix": "rolling"},
            tools={"default_timeout_s": 5.0}) for i in range(3)]
        every: list[Daemon] = []  # the stopped ones too: their logs count
        runs: list[str] = []
        async with anyio.create_task_group() as tg:
            live = [await Daemon.start(config, TOOL_WORKER__LOGGING__LEVEL="debug")
                    for config in configs]
            for replica in live:
                await replica.wait_for_line(
                    lambda line: line.get("event") == "replicas changed" and line["members"] == 3,
                    "3 replicas", timeout_s=60)
                tg.start_soon(replica.drain)
            every.extend(live)
            for wave in range(WAVES):
                first = wave * RUNS_PER_WAVE
                runs += [sim.create_run(threads[first + i], assistant_id,
                                        rounds=script(first + i)) for i in range(RUNS_PER_WAVE)]
                # Stop the replica once the new runs' first rounds are being answered.
                await wait_for(lambda done=first * ROUNDS: len(sim.accepted_submissions()) > done,
                               timeout_s=60, what="a round of the new runs")
                old = live[wave]
                old.signal(signal.SIGTERM)
                with anyio.fail_after(60):  # its drain task reads the log to the end
                    assert await old.process.wait() == 0
                live[wave] = await start_replica(configs[wave], tg)
                every.append(live[wave])
            await wait_for(sim.all_runs_terminal, timeout_s=90, what="every run to end")
            for replica in live:
                replica.signal(signal.SIGTERM)
            with anyio.fail_after(60):
                codes = [await replica.process.wait() for replica in live]
        assert codes == [0, 0, 0]
        assert_each_round_submitted_once(sim, runs, [ROUNDS] * len(runs))
        answered = Counter(line["tool_call_id"] for replica in every
                           for line in replica.events("tool call answered"))
        assert len(answered) == len(runs) * ROUNDS * 2
        assert set(answered.values()) == {1}, [c for c, n in answered.items() if n > 1]
        assert sum(len(r.events("round submitted")) for r in every) == len(runs) * ROUNDS

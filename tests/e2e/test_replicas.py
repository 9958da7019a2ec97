"""Three worker processes on the same threads, coordinated by a real Redis."""

from __future__ import annotations

import signal
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import SIM_KEY, assert_each_round_submitted_once, calls, start_runs
from tests.e2e.process import Daemon, write_config
from worker.simulator import Simulator, ToolCallScript

if TYPE_CHECKING:
    from pathlib import Path

    from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROUNDS = 3


def script(index: int) -> list[list[ToolCallScript]]:
    return [calls(("nap", {"seconds": 0.1}), ("add", {"a": index, "b": r})) for r in range(ROUNDS)]


def replica_config(tmp_path: Path, sim: Simulator, threads: list[str], redis: RedisServer,
                   name: str, lease_s: float) -> Path:
    return write_config(
        tmp_path / f"{name}.toml", sim, threads,
        coordination={"backend": "redis", "redis_url": redis.url, "lease_s": lease_s,
                      "key_prefix": "replicas"},
        tools={"default_timeout_s": 5.0},
    )


async def start_replicas(tmp_path: Path, sim: Simulator, threads: list[str],
                         redis: RedisServer, *, lease_s: float, once: bool) -> list[Daemon]:
    args = ("--once",) if once else ()
    return [
        await Daemon.start(replica_config(tmp_path, sim, threads, redis, f"r{i}", lease_s),
                           *args, TOOL_WORKER__LOGGING__LEVEL="debug")
        for i in range(3)
    ]


async def test_three_replicas_dispatch_each_round_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """With leases in Redis, three replicas watching the same threads send one request a round."""
    async with Simulator(api_key=SIM_KEY, thinking_s=0.02) as sim:
        threads, runs = start_runs(sim, [script(i) for i in range(12)])
        replicas = await start_replicas(tmp_path, sim, threads, redis_server, lease_s=5.0,
                                        once=True)
        try:
            codes = [await replica.wait(timeout_s=60) for replica in replicas]
        finally:
            for replica in replicas:
                await replica.aclose()
        assert codes == [0, 0, 0]
        assert_each_round_submitted_once(sim, runs, [ROUNDS] * 12)
        per_replica = [len(r.events("round submitted")) for r in replicas]
        assert sum(per_replica) == 12 * ROUNDS
        assert len(sim.submissions) == 12 * ROUNDS, "no round was dispatched twice"


async def test_a_killed_replica_and_a_redis_restart_lose_no_round(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """One replica is killed mid-round and Redis restarts; every round is still answered once."""
    async with Simulator(api_key=SIM_KEY, thinking_s=0.05) as sim:
        threads, runs = start_runs(sim, [script(i) for i in range(15)])
        total = 15 * ROUNDS
        replicas = await start_replicas(tmp_path, sim, threads, redis_server, lease_s=1.0,
                                        once=False)
        try:
            victim = replicas[0]
            found = await victim.wait_for_event("tool call answered")
            victim.signal(signal.SIGKILL)
            await victim.wait()
            await wait_for(lambda: len(sim.accepted_submissions()) >= total // 2,
                           timeout_s=60, what="half of the rounds")
            redis_server.restart()
            await wait_for(sim.all_runs_terminal, timeout_s=60, what="every run to end")
            for replica in replicas[1:]:
                replica.signal(signal.SIGTERM)
            codes = [await replica.wait() for replica in replicas[1:]]
        finally:
            for replica in replicas:
                await replica.aclose()
        assert codes == [0, 0]
        assert_each_round_submitted_once_allowing_refusals(sim, runs)
        victims_run = found["run_id"]
        assert sim.run(victims_run)["status"] == "completed"
        Counter(s.status for s in sim.submissions if s.status != 200)


def assert_each_round_submitted_once_allowing_refusals(sim: Simulator, runs: list[str]) -> None:
    """After a Redis restart a lease can vanish: a round may be sent twice, accepted once."""
    accepted = Counter((s.run_id, s.round_index) for s in sim.accepted_submissions())
    assert accepted == Counter({(run_id, r): 1 for run_id in runs for r in range(ROUNDS)})
    assert all(sim.run(run_id)["status"] == "completed" for run_id in runs)

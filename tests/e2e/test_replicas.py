"""Three worker processes on the same threads, coordinated by a real Redis.

The replicas divide the threads (each polls the third it owns), hand a dead one's threads over,
spend one request budget between them, and only one of them lists the threads (discovery).
"""

from __future__ import annotations

import signal
import socket
from collections import Counter
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.e2e.conftest import SIM_KEY, assert_each_round_submitted_once, calls, start_runs
from tests.e2e.process import Daemon, write_config
from tests.redis_server import free_port
from worker.service.membership import hrw_owner
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
        assistant_id = sim.create_assistant(name="test", tools=[])
        threads = [sim.create_thread() for _ in range(15)]
        total = 15 * ROUNDS
        replicas = await start_replicas(tmp_path, sim, threads, redis_server, lease_s=1.0,
                                        once=False)
        try:
            await all_joined(replicas)  # else the victim may own no thread with work left
            runs = [sim.create_run(t, assistant_id, rounds=script(i))
                    for i, t in enumerate(threads)]
            victim = replicas[0]
            # Generous: on a loaded machine the first answer can take long; not a speed test.
            found = await victim.wait_for_event("tool call answered", timeout_s=90)
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


def assert_each_round_submitted_once_allowing_refusals(sim: Simulator, runs: list[str]) -> None:
    """After a Redis restart a lease can vanish: a round may be sent twice, accepted once."""
    accepted = Counter((s.run_id, s.round_index) for s in sim.accepted_submissions())
    assert accepted == Counter({(run_id, r): 1 for run_id in runs for r in range(ROUNDS)})
    assert all(sim.run(run_id)["status"] == "completed" for run_id in runs)


# Dividing the work: each replica polls the threads it owns, and one budget for all.


def name_of(replica: Daemon) -> str:
    """The replica's name among the others, as the worker builds it (host and pid)."""
    return f"{socket.gethostname()}-{replica.process.pid}"


async def all_joined(replicas: list[Daemon], *, members: int = 3) -> None:
    """Every replica has started and seen ``members`` live replicas."""
    for replica in replicas:
        await replica.wait_for_event("worker started", timeout_s=30)
        await replica.wait_for_line(
            lambda line: line.get("event") == "replicas changed" and line["members"] == members,
            f"{members} replicas", timeout_s=30)


async def start_three(tmp_path: Path, sim: Simulator, threads: list[str], redis: RedisServer,
                      **sections: dict[str, Any]) -> tuple[list[Daemon], list[int]]:
    """Three replicas with their /metrics on ports of their own."""
    replicas, ports = [], []
    for i in range(3):
        port = free_port()
        config = write_config(
            tmp_path / f"r{i}.toml", sim, threads,
            server={"enabled": True, "host": "127.0.0.1", "port": port},
            **{"coordination": {"backend": "redis", "redis_url": redis.url, "lease_s": 3.0,
                                "key_prefix": "replicas"}, **sections})
        replicas.append(await Daemon.start(config))
        ports.append(port)
    return replicas, ports


async def requests_by_endpoint(session: aiohttp.ClientSession, port: int) -> Counter[str]:
    """The replica's API requests so far, by endpoint, from its /metrics."""
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "toolworker_api_requests_total":
                counts[sample.labels["endpoint"]] += int(sample.value)
    return counts


async def stop_all(replicas: list[Daemon]) -> list[int]:
    for replica in replicas:
        if replica.process.returncode is None:
            replica.signal(signal.SIGTERM)
    return [await replica.wait() for replica in replicas]


ONE_ROUND = [calls(("add", {"a": 1, "b": 2}))]


async def test_three_replicas_each_poll_the_third_of_the_threads_they_own(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Each replica polls its own threads only: its requests follow its rendezvous share,
    about a third; and a run on any thread is answered once."""
    async with Simulator(api_key=SIM_KEY, thinking_s=0.02) as sim:
        threads = [sim.create_thread() for _ in range(60)]
        replicas, ports = await start_three(tmp_path, sim, threads, redis_server,
                                            watch={"idle_poll_interval_s": 0.5})
        try:
            await all_joined(replicas)
            names = [name_of(r) for r in replicas]
            owned = Counter(hrw_owner(t, names) for t in threads)
            async with aiohttp.ClientSession() as session:
                before = [await requests_by_endpoint(session, p) for p in ports]

                async def polled() -> list[int]:
                    now = [await requests_by_endpoint(session, p) for p in ports]
                    return [n["list_runs"] - b["list_runs"] for n, b in zip(now, before,
                                                                          strict=True)]

                await wait_for(lambda: _at_least(polled, 600), timeout_s=60, what="600 polls")
                counts = await polled()
            _, runs = _runs_on(sim, threads)
            await wait_for(lambda: all(sim.run(r)["status"] == "completed" for r in runs),
                           timeout_s=60, what="every run answered")
            codes = await stop_all(replicas)
        finally:
            for replica in replicas:
                await replica.aclose()
    assert codes == [0, 0, 0]
    shares = [count / sum(counts) for count in counts]
    expected = [owned[name] / len(threads) for name in names]
    assert all(abs(share - want) < 0.06 for share, want in zip(shares, expected, strict=True)), (
        shares, expected)
    assert all(0.15 < share < 0.55 for share in shares), shares
    assert_each_round_submitted_once(sim, runs, [1] * len(runs))


async def _at_least(polled: Any, total: int) -> bool:
    return sum(await polled()) >= total


def _runs_on(sim: Simulator, threads: list[str]) -> tuple[str, list[str]]:
    assistant_id = sim.create_assistant(name="test", tools=[])
    return assistant_id, [sim.create_run(t, assistant_id, rounds=[ONE_ROUND[0]])
                          for t in threads]


async def test_a_replica_killed_hands_its_threads_to_the_others(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """kill -9: the others see it gone within lease_s, take its threads, answer their runs."""
    async with Simulator(api_key=SIM_KEY, thinking_s=0.02) as sim:
        threads = [sim.create_thread() for _ in range(30)]
        replicas, _ = await start_three(tmp_path, sim, threads, redis_server)
        try:
            await all_joined(replicas)
            victim, *survivors = replicas
            victims_threads = [t for t in threads
                               if hrw_owner(t, [name_of(r) for r in replicas]) == name_of(victim)]
            victim.signal(signal.SIGKILL)
            await victim.wait()
            for survivor in survivors:
                await survivor.wait_for_line(
                    lambda line: line.get("event") == "replicas changed"
                    and name_of(victim) in line["left"], "the victim gone", timeout_s=30)
            _, runs = _runs_on(sim, threads)
            await wait_for(lambda: all(sim.run(r)["status"] == "completed" for r in runs),
                           timeout_s=60, what="every run answered, the victim's too")
            left = {tuple(line["left"]) for r in survivors
                    for line in r.events("replicas changed") if line["left"]}
            codes = await stop_all(survivors)
        finally:
            for replica in replicas:
                await replica.aclose()
    assert codes == [0, 0]
    assert victims_threads, "the victim owned threads"
    assert_each_round_submitted_once(sim, runs, [1] * len(runs))
    assert left == {(name_of(victim),)}


BUDGET = 30


async def test_three_replicas_stay_within_one_request_budget(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """[api] max_requests_per_s is the deployment's: three replicas that would each spend it
    all send, together, no more than it in any second the API sees (within 1.15x)."""
    async with Simulator(api_key=SIM_KEY) as sim:
        threads = [sim.create_thread() for _ in range(30)]
        replicas, _ = await start_three(tmp_path, sim, threads, redis_server,
                                        api={"max_requests_per_s": BUDGET})
        try:
            await all_joined(replicas)
            start = len(sim.request_times)
            await wait_for(lambda: len(sim.request_times) - start >= 6 * BUDGET, timeout_s=60,
                           what="six seconds' worth of requests")
            times = sim.request_times[start:]
            codes = await stop_all(replicas)
        finally:
            for replica in replicas:
                await replica.aclose()
    assert codes == [0, 0, 0]
    assert busiest_second(times) <= 1.15 * BUDGET
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate <= 1.15 * BUDGET
    assert rate >= 0.4 * BUDGET, "the replicas spend the budget between them"


def busiest_second(times: list[float]) -> int:
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_only_one_replica_lists_the_threads(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Azure's discovery runs on the holder of the lease; the runs it finds are answered."""
    async with Simulator(api_key=SIM_KEY, profile="azure") as sim:
        replicas, ports = await start_three(
            tmp_path, sim, [], redis_server,
            api={"backend": "azure", "azure_auth": "api_key", "max_requests_per_s": 0},
            watch={"discover": True, "discover_interval_s": 0.3, "idle_poll_interval_s": 0.2})
        try:
            await all_joined(replicas)
            threads = [sim.create_thread() for _ in range(6)]
            _, runs = _runs_on(sim, threads)
            await wait_for(lambda: all(sim.run(r)["status"] == "completed" for r in runs),
                           timeout_s=60, what="every discovered run answered")
            async with aiohttp.ClientSession() as session:
                listings = [(await requests_by_endpoint(session, p))["list_threads"]
                            for p in ports]
            codes = await stop_all(replicas)
        finally:
            for replica in replicas:
                await replica.aclose()
    assert codes == [0, 0, 0]
    # One listing each is the start's access check (can this key list threads?).
    assert sorted(listings)[:2] == [1, 1], listings
    assert max(listings) >= 3, listings
    assert_each_round_submitted_once(sim, runs, [1] * len(runs))

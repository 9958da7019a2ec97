"""What is watched outlives the process: real workers announced to, stopped, killed, restarted.

Each test's workers keep their SQLite file under the test's own STATE_DIRECTORY (conftest);
the Redis ones use a private redis-server.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import SIM_KEY, calls
from tests.e2e.process import Daemon, write_config
from tests.redis_server import free_port
from worker.service.intake import enqueue
from worker.service.redis_connection import connect_redis
from worker.simulator import Simulator

if TYPE_CHECKING:
    from pathlib import Path

    from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TOKEN = "watch-token-for-tests"
ENTRIES = "tool-worker:watch:entries"


def config(tmp_path: Path, sim: Simulator, name: str, *, threads: list[str] | None = None,
           port: int = 0, redis: RedisServer | None = None, **watch: Any) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "watch": {"store_sync_interval_s": 0.2, **watch},
        "server": {"enabled": port != 0, "host": "127.0.0.1", "port": port},
    }
    if redis is not None:
        sections["coordination"] = {"backend": "redis", "redis_url": redis.url, "lease_s": 2.0}
        sections["intake"] = {"redis_stream": True, "redis_url": redis.url, "claim_idle_s": 1.0}
    return write_config(tmp_path / f"{name}.toml", sim, threads or [], **sections)


async def start(path: Path) -> Daemon:
    daemon = await Daemon.start(path, TOOL_WORKER__SERVER__WATCH_TOKEN=TOKEN,
                                TOOL_WORKER__LOGGING__LEVEL="debug")
    await daemon.wait_for_event("worker started")
    return daemon


async def stop(daemon: Daemon) -> None:
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    await daemon.aclose()


async def announce(port: int, thread_id: str) -> int:
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{port}/v1/watch", json={"thread_id": thread_id},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        return response.status


async def runs_answered(sim: Simulator, threads: list[str], *, timeout_s: float = 60) -> int:
    """Start a one-round run on each thread; returns how many completed within the time."""
    assistant_id = sim.create_assistant(name="later")
    runs = [sim.create_run(t, assistant_id, rounds=[calls(("add", {"a": 1}))]) for t in threads]
    def done() -> int:
        return sum(sim.run(r)["status"] == "completed" for r in runs)

    with contextlib.suppress(AssertionError):  # the count says how many, not a timeout
        await wait_for(lambda: done() == len(runs), timeout_s=timeout_s, what="every run")
    return done()


async def stored(redis: RedisServer) -> int:
    client = connect_redis(redis.url)
    try:
        return int(await client.hlen(ENTRIES))
    except OSError:
        return -1
    finally:
        await client.aclose()


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
async def test_threads_announced_over_http_are_answered_after_a_restart(
    tmp_path: Path, how: str
) -> None:
    """12 threads announced with POST /v1/watch, stopped (or killed right after the last 202:
    each was committed before it was answered), start again, then runs: 12 of 12."""
    async with Simulator(api_key=SIM_KEY) as sim:
        threads = [sim.create_thread() for _ in range(12)]
        port = free_port()
        path = config(tmp_path, sim, "one", port=port)
        first = await start(path)
        try:
            assert [await announce(port, t) for t in threads] == [202] * 12
        finally:
            if how == "SIGTERM":
                await stop(first)
            else:
                first.process.kill()
                await first.aclose()
        second = await start(path)
        try:
            loaded = second.events("watch store loaded")[0]
            assert (loaded["store"], loaded["entries"]) == ("sqlite", 12)
            assert await runs_answered(sim, threads) == 12
        finally:
            await stop(second)


async def test_threads_announced_on_the_stream_are_answered_after_a_restart(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The same on Redis: the watch set lives in Redis; an entry is acked once stored."""
    async with Simulator(api_key=SIM_KEY) as sim:
        threads = [sim.create_thread() for _ in range(12)]
        path = config(tmp_path, sim, "one", redis=redis_server)
        first = await start(path)
        try:
            for thread_id in threads:
                await enqueue(redis_server.url, thread_id)
            await wait_for(lambda: _equals(stored(redis_server), 12), what="12 stored")
        finally:
            await stop(first)
        second = await start(path)
        try:
            assert second.events("watch store loaded")[0]["store"] == "redis"
            assert await runs_answered(sim, threads) == 12
        finally:
            await stop(second)


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_a_replica_killed_hands_its_threads_to_the_others(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Three replicas, 30 threads on the stream, one killed -9, then a run on each: 30 of 30."""
    async with Simulator(api_key=SIM_KEY) as sim:
        threads = [sim.create_thread() for _ in range(30)]
        replicas = [await start(config(tmp_path, sim, f"r{i}", redis=redis_server))
                    for i in range(3)]
        try:
            for thread_id in threads:
                await enqueue(redis_server.url, thread_id)
            await wait_for(lambda: _equals(stored(redis_server), 30), what="30 stored")
            replicas[0].process.kill()
            await replicas[0].process.wait()
            assert await runs_answered(sim, threads) == 30
        finally:
            for replica in replicas[1:]:
                await stop(replica)
            await replicas[0].aclose()


async def test_an_idle_announced_thread_is_retired_and_a_configured_one_is_not(
    tmp_path: Path,
) -> None:
    """After forget_after_s without a run: gone from the store and from the poller, counted."""
    async with Simulator(api_key=SIM_KEY) as sim:
        configured, idle = sim.create_thread(), sim.create_thread()
        port = free_port()
        state = tmp_path / "watch.sqlite3"
        daemon = await start(config(tmp_path, sim, "one", threads=[configured], port=port,
                                    forget_after_s=1.0, state_path=str(state)))
        try:
            assert await announce(port, idle) == 202
            retired = await daemon.wait_for_event("idle threads retired")
            assert retired["retired"] == 1
            with sqlite3.connect(state) as db:
                ids = {row[0] for row in db.execute("SELECT id FROM watched")}
            assert ids == {configured}
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{port}/metrics") as response:
                metrics = await response.text()
            assert "toolworker_threads_retired_total 1.0" in metrics
            assert "toolworker_watched_threads 1.0" in metrics
            assert await runs_answered(sim, [configured]) == 1
        finally:
            await stop(daemon)


async def test_a_redis_restarted_empty_gets_the_watch_set_written_back(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis loses every key; the worker notices the new generation and writes back its 5."""
    async with Simulator(api_key=SIM_KEY) as sim:
        threads = [sim.create_thread() for _ in range(5)]
        daemon = await start(config(tmp_path, sim, "one", redis=redis_server))
        try:
            for thread_id in threads:
                await enqueue(redis_server.url, thread_id)
            await wait_for(lambda: _equals(stored(redis_server), 5), what="5 stored")
            redis_server.restart()
            await daemon.wait_for_event(
                "the watch store came back empty or new; wrote back what this replica holds")
            await wait_for(lambda: _equals(stored(redis_server), 5), what="5 written back")
            assert await runs_answered(sim, threads) == 5
        finally:
            await stop(daemon)


async def in_flight(port: int) -> int:
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{port}/status.json") as response:
        return len((await response.json())["in_flight"])


async def test_no_round_is_taken_after_a_signal(tmp_path: Path) -> None:
    """SIGTERM while a round's handler runs: that round is submitted, the next one the
    submission's stream brings is left; the restarted worker finds it by polling."""
    async with Simulator(api_key=SIM_KEY) as sim:
        thread_id = sim.create_thread()
        assistant_id = sim.create_assistant(name="drain")
        run_id = sim.create_run(thread_id, assistant_id, rounds=[
            calls(("nap", {"seconds": 1.0})), calls(("add", {"a": 1}))])
        port = free_port()
        path = config(tmp_path, sim, "one", threads=[thread_id], port=port)
        daemon = await start(path)
        await wait_for(lambda: in_flight(port), what="the round in flight")
        await stop(daemon)
        assert [s.round_index for s in sim.accepted_submissions(run_id)] == [0]
        assert daemon.events("draining: leaving the run's next round to the next worker")
        assert sim.run(run_id)["status"] == "requires_action"
        again = await start(path)
        try:
            await wait_for(lambda: sim.run(run_id)["status"] == "completed", what="the run")
        finally:
            await stop(again)
        assert [s.round_index for s in sim.accepted_submissions(run_id)] == [0, 1]

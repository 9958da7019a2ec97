"""Attacks on the worker process from outside, each of which used to hurt (issue #25).

Each test runs real worker processes against the simulator (and a private Redis), does what
an attacker would, and then shows the worker still answers rounds.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import calls, start_runs
from tests.e2e.process import SIM_KEY, Daemon, write_config
from tests.redis_server import free_port
from worker.service.redis_connection import connect_redis
from worker.simulator import Simulator

if TYPE_CHECKING:
    from pathlib import Path

    from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STREAM = "attacks:watch"

# Every way an entry on the stream can be unusable, and the reason it is counted under.
POISON: list[tuple[dict[Any, Any], str]] = [
    ({b"thread_id": b"thread_\xff\xfe"}, "undecodable"),  # issue #25: killed every replica
    ({b"thread_id": b"thread_ok", b"run_id": b"run_\xc3"}, "undecodable"),
    ({b"\xff\xfe": b"thread_abc"}, "undecodable"),
    ({"run_id": "run_abc"}, "bad_request"),
    ({"thread_id": ""}, "bad_request"),
    ({"thread_id": "thread_abc", "priority": "high"}, "bad_request"),
    ({f"f{i}": "x" for i in range(1000)}, "bad_request"),
    ({"thread_id": "../../assistants"}, "bad_id"),
    ({"thread_id": "thread_a\nforged log line"}, "bad_id"),
    ({"thread_id": "thread_\x00"}, "bad_id"),
    ({"thread_id": "thread_" + "a" * 1_000_000}, "bad_id"),
    ({"thread_id": "thread_abc", "run_id": "run_?x=1"}, "bad_id"),
]


def refused(metrics_page: str) -> dict[str, float]:
    pattern = r'^toolworker_intake_refused_total\{reason="(\w+)"\} ([0-9.e+]+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, metrics_page, re.MULTILINE)}


async def metrics_of(session: aiohttp.ClientSession, port: int) -> str:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        return await response.text()


async def test_poison_on_the_stream_leaves_three_replicas_answering(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Every kind of unusable entry is dropped, counted and acknowledged by whichever replica
    reads it; all three stay up, and a good entry after the poison is still answered."""
    async with Simulator(api_key=SIM_KEY) as sim:
        threads, runs = start_runs(sim, [[calls(("add", {"a": 1, "b": 2}))]])
        ports = [free_port() for _ in range(3)]
        replicas = [await Daemon.start(write_config(
            tmp_path / f"r{i}.toml", sim, [],
            coordination={"backend": "redis", "redis_url": redis_server.url},
            intake={"redis_stream": True, "redis_url": redis_server.url, "stream": STREAM,
                    "claim_idle_s": 0.5},
            server={"enabled": True, "host": "127.0.0.1", "port": port},
        )) for i, port in enumerate(ports)]
        redis = connect_redis(redis_server.url)
        try:
            for replica in replicas:
                await replica.wait_for_event("worker started")
            for fields, _ in POISON:
                await redis.xadd(STREAM, fields)
            await redis.xadd(STREAM, {"thread_id": threads[0], "run_id": runs[0]})
            await wait_for(lambda: sim.run(runs[0])["status"] == "completed", timeout_s=30,
                           what="the good entry's run, answered")

            async def all_counted() -> bool:
                pages = [await metrics_of(session, port) for port in ports]
                totals = [refused(page) for page in pages]
                return sum(sum(t.values()) for t in totals) >= len(POISON)

            async with aiohttp.ClientSession() as session:
                await wait_for(all_counted, timeout_s=20, what="every poison entry counted")
                pages = [await metrics_of(session, port) for port in ports]
            pending = await redis.xpending(STREAM, "tool-worker")
            alive = [replica.process.returncode is None for replica in replicas]
        finally:
            await redis.aclose()
            for replica in replicas:
                await replica.aclose()
    assert alive == [True, True, True], [r.raw.decode()[-2000:] for r in replicas]
    assert pending["pending"] == 0
    counted: dict[str, float] = {}
    for page in pages:
        for reason, value in refused(page).items():
            counted[reason] = counted.get(reason, 0) + value
    expected: dict[str, float] = {}
    for _, reason in POISON:
        expected[reason] = expected.get(reason, 0) + 1
    assert {k: v for k, v in counted.items() if v} == expected

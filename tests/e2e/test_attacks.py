"""Attacks on the worker process from outside, each of which used to hurt (issue #25).

Each test runs real worker processes against the simulator (and a private Redis), does what
an attacker would, and then shows the worker still answers rounds.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import calls, start_runs
from tests.e2e.process import ROOT, SIM_KEY, Daemon, command, environment, write_config
from tests.redis_server import free_port
from worker.service.redis_connection import connect_redis
from worker.service.status import NAMES_SHOWN, RECENT_SHOWN
from worker.simulator import Simulator, ToolCallScript

if TYPE_CHECKING:
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


# --- Connections: what a client may hold without a token ------------------------------------

NOFILE = 256
HOLDERS = 400  # more connections than the worker has file descriptors
WATCH_TOKEN = "attacks-watch-token-0123456789"
AUTHORIZED = f"Authorization: Bearer {WATCH_TOKEN}\r\n".encode()
HALF_REQUEST = b"POST /v1/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"


class Holders:
    """``count`` connections held open for as long as the worker lets them, each re-opened a
    second after the worker closes it: idle ones, half a request's headers, headers and half
    a body."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.connected = 0
        self.closed_by_worker = 0

    async def hold(self, index: int) -> None:
        payload = (b"", HALF_REQUEST, HALF_REQUEST + b"\r\n{\"thread_id\"")[index % 3]
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", self.port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            self.connected += 1
            async with stream:
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError,
                                         ConnectionError, OSError):
                    if payload:
                        await stream.send(payload)
                    while await stream.receive():  # nothing comes but the close
                        pass
            self.closed_by_worker += 1
            await anyio.sleep(1.0)


async def readyz(port: int) -> int:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.get(f"http://127.0.0.1:{port}/readyz") as response:
        return response.status


async def start_under_nofile(config: Path, nofile: int) -> Daemon:
    """The worker with ``ulimit -n`` lowered, as under systemd's LimitNOFILE."""
    process = await anyio.open_process(
        ["sh", "-c", f'ulimit -n {nofile} && exec "$@"', "sh", *command(config)],
        env=environment(), cwd=ROOT)
    return Daemon(process)


async def test_more_idle_and_half_requests_than_descriptors_leave_the_worker_answering(
    tmp_path: Path,
) -> None:
    """400 held connections (idle, half headers, half a body) against ``ulimit -n 256``: the
    cap keeps descriptors for the API, so new runs are answered and /readyz answers."""
    async with Simulator(api_key=SIM_KEY) as sim:
        assistant_id = sim.create_assistant(name="test", tools=[])
        threads = [sim.create_thread() for _ in range(4)]
        port = free_port()
        config = write_config(
            tmp_path / "w.toml", sim, threads,
            api={"max_connections": 16, "max_streams": 8},
            server={"enabled": True, "host": "127.0.0.1", "port": port},
        )
        worker = await start_under_nofile(config, NOFILE)
        holders = Holders(port, HOLDERS)
        try:
            await worker.wait_for_event("worker started")
            async with anyio.create_task_group() as tg:
                for index in range(HOLDERS):
                    tg.start_soon(holders.hold, index)
                await wait_for(lambda: holders.connected >= HOLDERS, timeout_s=30,
                               what="every holder connected once")
                runs = [sim.create_run(t, assistant_id,
                                       rounds=[calls(("add", {"a": i, "b": r})) for r in range(2)])
                        for i, t in enumerate(threads)]
                await wait_for(lambda: all(sim.run(r)["status"] == "completed" for r in runs),
                               timeout_s=30, what="the runs started under attack, answered")
                statuses = [await readyz(port) for _ in range(5)]
                tg.cancel_scope.cancel()
            alive = worker.process.returncode is None
        finally:
            await worker.aclose()
    capped = [e for e in worker.lines if "does not fit in the file descriptor" in e["event"]]
    figures = (f"connections made {holders.connected}, closed by the worker "
               f"{holders.closed_by_worker}; cap {capped[0]['lowered_to'] if capped else '?'}; "
               f"stderr {len(worker.raw)} bytes")
    print(f"\n{figures}")  # noqa: T201 - the figures, with -s
    assert alive
    assert statuses == [200] * 5
    assert not [e for e in worker.lines if "Too many open files" in json.dumps(e)]
    assert len(worker.raw) < 200_000, "no line per connection"


async def test_slow_and_idle_connections_are_closed(tmp_path: Path) -> None:
    """A connection that sends nothing, one that sends headers a byte at a time and one that
    never finishes its body are each closed within their timeout, and counted."""
    async with Simulator(api_key=SIM_KEY) as sim:
        port = free_port()
        config = write_config(tmp_path / "w.toml", sim, [], server={
            "enabled": True, "host": "127.0.0.1", "port": port,
            "idle_timeout_s": 1.0, "request_timeout_s": 2.0})
        worker = await Daemon.start(config, TOOL_WORKER__SERVER__WATCH_TOKEN=WATCH_TOKEN)
        closed: dict[str, tuple[float, bytes]] = {}
        try:
            await worker.wait_for_event("worker started")

            async def one(name: str, payload: bytes, drip: bytes) -> None:
                """Hold a connection, sending ``drip`` now and then, until the worker closes it."""
                started, answer = anyio.current_time(), b""
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError,
                                             ConnectionError):
                        await stream.send(payload)
                        while True:  # a byte now and then, as a slowloris does
                            with anyio.move_on_after(0.3):
                                answer += await stream.receive()
                            if drip:
                                await stream.send(drip)
                closed[name] = (round(anyio.current_time() - started, 1), answer[:40])

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(one, "idle", b"", b"")
                    tg.start_soon(one, "headers", b"GET /readyz HTTP/1.1\r\n", b"X")
                    tg.start_soon(one, "body", HALF_REQUEST + AUTHORIZED + b"\r\n{", b" ")
            async with aiohttp.ClientSession() as session:
                page = await metrics_of(session, port)
        finally:
            await worker.aclose()
    print(f"\nclosed after (s, bytes answered): {closed}")  # noqa: T201 - figures, with -s
    assert all(answer == b"" for _, answer in closed.values())
    assert set(closed) == {"idle", "headers", "body"}
    assert 'toolworker_http_connections_closed_total{reason="idle"} 1.0' in page
    assert 'toolworker_http_connections_closed_total{reason="slow_request"} 2.0' in page


def refused_lines(page: str) -> list[tuple[str, str]]:
    return [tuple(line.split(" ")) for line in page.splitlines()  # type: ignore[misc]
            if line.startswith("toolworker_http")]


# --- Names from outside: a thousand new tool names a round ------------------------------------

NAMES_PER_ROUND = 1000
WARM_ROUNDS = 3
ROUNDS_MEASURED = 60


def made_up(round_index: int) -> list[ToolCallScript]:
    return [ToolCallScript(f"made_up_{round_index}_{i}_{'x' * 40}", "{}")
            for i in range(NAMES_PER_ROUND)]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_thousand_new_tool_names_a_round_keep_memory_and_the_status_page_bounded(
    tmp_path: Path,
) -> None:
    """Unknown names share one metric label and one status row; the worker's RSS stays within
    50 MiB of where it was after the first rounds, and /status stays small."""
    async with Simulator(api_key=SIM_KEY) as sim:
        assistant_id = sim.create_assistant(name="test", tools=[])
        thread_id = sim.create_thread()
        port = free_port()
        config = write_config(tmp_path / "w.toml", sim, [thread_id],
                              server={"enabled": True, "host": "127.0.0.1", "port": port})
        worker = await Daemon.start(config)
        try:
            await worker.wait_for_event("worker started")

            async def rounds(first: int, count: int) -> None:
                run_id = sim.create_run(thread_id, assistant_id, rounds=[
                    made_up(first + r) for r in range(count)])
                await wait_for(lambda: sim.run(run_id)["status"] == "completed", timeout_s=90,
                               what=f"{count} rounds of made-up names")

            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.drain)
                await rounds(0, WARM_ROUNDS)
                start_mib = rss_mib(worker.process.pid)
                await rounds(WARM_ROUNDS, ROUNDS_MEASURED)
                end_mib = rss_mib(worker.process.pid)
                async with aiohttp.ClientSession() as session:
                    started = anyio.current_time()
                    async with session.get(f"http://127.0.0.1:{port}/status") as response:
                        page = await response.read()
                    page_s = anyio.current_time() - started
                    metrics_page = await metrics_of(session, port)
                tg.cancel_scope.cancel()
        finally:
            await worker.aclose()
    names = (WARM_ROUNDS + ROUNDS_MEASURED) * NAMES_PER_ROUND
    print(f"\n{names} made-up names: RSS {start_mib:.0f} -> {end_mib:.0f} MiB; /status "  # noqa: T201
          f"{len(page)} bytes in {page_s * 1000:.0f} ms; {len(worker.raw)} bytes of log")
    assert end_mib - start_mib < 50
    assert len(page) < 100_000
    assert metrics_page.count("made_up_") == 0
    # A few names per round shown, never one per name: 63,000 were sent. The bound holds
    # whatever the interleaving: the last rounds shown (their tools and their failed calls)
    # plus the one round this single thread can still have in flight when the page is read.
    shown = page.count(b"made_up_")
    print(f"{shown} made-up names on /status")  # noqa: T201
    assert shown <= (RECENT_SHOWN * 2 + 1) * NAMES_SHOWN
    assert len(worker.raw) < 500_000, "no line per call, no line listing every name"
    too_many = worker.events("round has too many tool calls; the excess answered with an error")
    assert len(too_many) == WARM_ROUNDS + ROUNDS_MEASURED  # one line a round, not per call

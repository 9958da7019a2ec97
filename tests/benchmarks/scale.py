"""Scale benchmark: 10,000 watched threads, a few hundred active runs, one request budget.

``.venv/bin/python -m tests.benchmarks.scale [--threads N] [--active N] [--budget RPS]
[--replicas N]``

The simulator runs in this process; each worker is a separate ``tool-worker run`` process, so
its peak RSS is its own. Reports the worker's peak RSS, the busiest one-second window of
requests the simulator saw against the budget, and detection latency percentiles: for rounds
of runs on configured threads (from the round becoming visible to its accepted submission,
which includes that one request), and for runs announced through POST /v1/watch (from the
announcement to the accepted submission).

With ``--replicas N`` (N > 1) the workers share a private redis-server ([coordination]
backend = "redis"): one budget for all of them, each thread polled by one. The report adds
each replica's part of the requests and the Redis commands per poll.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import RedisServer, free_port
from worker.simulator import Simulator, ToolCallScript

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-scale-bench"
TOKEN = "scale-bench-watch-token"


def _config(path: Path, sim: Simulator, threads: list[str], args: argparse.Namespace,
            port: int, redis_url: str | None) -> None:
    coordination = (f'[coordination]\nbackend = "redis"\nredis_url = "{redis_url}"\n'
                    if redis_url else "")
    path.write_text(coordination + f"""
[api]
base_url = "{sim.base_url}"
max_requests_per_s = {args.budget}
max_connections = 32
[watch]
threads = {json.dumps(threads)}
active_poll_interval_s = {args.active_interval}
idle_poll_interval_s = {args.idle_interval}
max_concurrent_polls = 64
[tools]
modules = ["tool_worker_tools.builtin"]
[server]
host = "127.0.0.1"
port = {port}
[logging]
format = "json"
level = "warning"
""")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _busiest_second(times: list[float]) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _script(rounds: int) -> list[list[ToolCallScript]]:
    return [[ToolCallScript("echo", '{"text": "a"}'), ToolCallScript("calculate",
                                                                      '{"expression": "6*7"}')]
            for _ in range(rounds)]


async def _announce(sim: Simulator, assistant_id: str, ports: list[int],
                    count: int) -> dict[str, float]:
    """Runs on threads the workers do not watch, announced once they wait for outputs (to
    each replica in turn, as a load balancer would)."""
    announced: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        for index in range(count):
            port = ports[index % len(ports)]
            thread_id = sim.create_thread()
            run_id = sim.create_run(thread_id, assistant_id, rounds=_script(1))
            # The simulator's state moves on its clock as it is read: checking is waiting.
            while sim.run(run_id)["status"] != "requires_action":  # noqa: ASYNC110
                await anyio.sleep(0.01)
            announced[run_id] = time.monotonic()
            async with session.post(f"http://127.0.0.1:{port}/v1/watch",
                                    json={"thread_id": thread_id, "run_id": run_id},
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                assert response.status == 202, await response.text()
            await anyio.sleep(0.2)
    return announced


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tool-worker-scale-"))
    redis = RedisServer(workdir) if args.replicas > 1 else None
    async with Simulator(api_key=KEY, thinking_s=args.thinking, seed=args.seed) as sim:
        assistant_id = sim.create_assistant(name="scale")
        threads = [sim.create_thread() for _ in range(args.threads)]
        env = {**os.environ, "OPENAI_API_KEY": KEY, "TOOL_WORKER__SERVER__WATCH_TOKEN": TOKEN,
               "PYTHONPATH": str(ROOT)}
        workers: list[subprocess.Popen[bytes]] = []
        ports = [free_port() for _ in range(args.replicas)]
        if redis is not None:
            redis.start()
        try:
            for index, port in enumerate(ports):
                config = workdir / f"worker{index}.toml"
                _config(config, sim, threads, args, port, redis.url if redis else None)
                workers.append(subprocess.Popen(  # noqa: S603, ASYNC220 - the benchmark's own
                    [sys.executable, "-m", "worker", "run", "--config", str(config)], env=env,
                    stderr=(workdir / f"worker{index}.log").open("wb"), cwd=ROOT))
            return await _measure(sim, assistant_id, threads, args, ports,
                                  [w.pid for w in workers], redis)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=60)
            if redis is not None:
                redis.stop()


async def _scrape(ports: list[int]) -> list[dict[str, float]]:
    """Each replica's API requests and polls so far, from its /metrics."""
    figures = []
    async with aiohttp.ClientSession() as session:
        for port in ports:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            counts = {"requests": 0.0, "polls": 0.0}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "toolworker_api_requests_total":
                        counts["requests"] += sample.value
                    elif sample.name == "toolworker_polls_total":
                        counts["polls"] += sample.value
            figures.append(counts)
    return figures


def _redis_commands(redis: RedisServer | None) -> int:
    """Commands Redis processed so far (those inside scripts included)."""
    if redis is None:
        return 0
    output = subprocess.run(  # noqa: S603 - our own binary and arguments
        [redis.binary.replace("redis-server", "redis-cli"), "-p", str(redis.port), "info",
         "stats"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("total_commands_processed:"))
    return int(line.split(":")[1])


async def _measure(sim: Simulator, assistant_id: str, threads: list[str],
                   args: argparse.Namespace, ports: list[int], pids: list[int],
                   redis: RedisServer | None) -> dict[str, Any]:
    await anyio.sleep(args.warmup)  # the workers start and sweep the idle threads once
    sim.request_times.clear()
    before, commands_before = await _scrape(ports), _redis_commands(redis)
    started = time.monotonic()
    active_runs = [sim.create_run(thread_id, assistant_id, rounds=_script(args.rounds))
                   for thread_id in threads[: args.active]]
    announced = await _announce(sim, assistant_id, ports, args.announced)
    with anyio.fail_after(args.timeout):
        runs = [*active_runs, *announced]
        while not all(sim.run(r)["status"] == "completed" for r in runs):  # noqa: ASYNC110
            await anyio.sleep(0.1)
    elapsed_s = time.monotonic() - started
    after, commands = await _scrape(ports), _redis_commands(redis) - commands_before
    requests = [a["requests"] - b["requests"] for a, b in zip(after, before, strict=True)]
    polls = sum(a["polls"] - b["polls"] for a, b in zip(after, before, strict=True))
    submitted = {(s.run_id, s.round_index): s.at for s in sim.accepted_submissions()}
    followed = set(active_runs)
    latency = {key: submitted[key] - seen for key, seen in sim.rounds_visible.items()
               if key[0] in followed and key in submitted}
    # A run's first round is found by the thread's idle poll; later rounds by the active one.
    first = [value for (_, index), value in latency.items() if index == 0]
    detection = [value for (_, index), value in latency.items() if index > 0]
    intake = [submitted[(run_id, 0)] - at for run_id, at in announced.items()]
    busiest = _busiest_second(sim.request_times)
    return {
        "replicas": args.replicas,
        "threads": args.threads, "active_runs": args.active, "rounds": len(latency),
        "announced": len(intake), "budget_rps": args.budget,
        "busiest_second": busiest, "mean_rps": round(len(sim.request_times) / elapsed_s, 1),
        "replica_shares": "/".join(f"{r / max(sum(requests), 1):.2f}" for r in requests),
        "redis_commands_per_poll": round(commands / max(polls, 1), 3),
        "peak_rss_mib": round(max(_peak_rss_mib(pid) for pid in pids), 1),
        "detect_p50_ms": round(1000 * _pct(detection, 0.5)),
        "detect_p99_ms": round(1000 * _pct(detection, 0.99)),
        "first_round_p50_ms": round(1000 * _pct(first, 0.5)),
        "first_round_max_ms": round(1000 * max(first, default=float("nan"))),
        "idle_interval_ms": round(1000 * args.idle_interval),
        "intake_p50_ms": round(1000 * _pct(intake, 0.5)),
        "intake_p99_ms": round(1000 * _pct(intake, 0.99)),
        "intake_max_ms": round(1000 * max(intake, default=float("nan"))),
        "active_interval_ms": round(1000 * args.active_interval),
    }


def _report(result: dict[str, Any], argv: list[str]) -> str:
    checks = [
        ("peak RSS under 150 MiB", result["peak_rss_mib"] < 150),
        ("no one-second window above the budget", result["busiest_second"] <= result["budget_rps"]),
        ("detection p50 (followed runs) <= active poll interval",
         result["detect_p50_ms"] <= result["active_interval_ms"]),
        ("first rounds found within the idle interval",
         result["first_round_max_ms"] <= result["idle_interval_ms"]),
        ("intake p50 < 100 ms + one request", result["intake_p50_ms"] < 150),
        ("intake p99 < 1 s + one request", result["intake_p99_ms"] < 1050),
        *([("each replica about an equal part of the requests",
            all(abs(float(share) - 1 / result["replicas"]) < 0.1
                for share in result["replica_shares"].split("/")))]
          if result["replicas"] > 1 else []),
    ]
    lines = [
        f"Command: `.venv/bin/python -m tests.benchmarks.scale {' '.join(argv)}`".rstrip() ,
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| figure | value |", "|---|---|",
        *[f"| {key} | {value} |" for key, value in result.items()],
        "", "| target | met |", "|---|---|",
        *[f"| {name} | {'yes' if ok else 'NO'} |" for name, ok in checks],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.scale")
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--announced", type=int, default=30)
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--thinking", type=float, default=1.0)
    parser.add_argument("--active-interval", type=float, default=0.5)
    parser.add_argument("--idle-interval", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args(argv)
    result = anyio.run(run, args)
    print(_report(result, argv))  # noqa: T201 - the report is the output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

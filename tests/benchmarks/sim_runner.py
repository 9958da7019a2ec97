"""Simulator child process: serves one scenario's runs and reports what it saw.

``python -m tests.benchmarks.sim_runner --scenario NAME --profile NAME [--hints MODE] --seed N
--out FILE`` speaks the simulator side of ``protocol``: it creates the threads at start, the runs on
``start`` (so every system meets them at the same age), and on ``stop`` or SIGTERM writes
``rounds_visible``, the accepted submissions, ``request_counts`` and the faults it injected
to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from tests.benchmarks import agents_sim
from tests.benchmarks.protocol import API_KEY, START, STOP, send
from tests.benchmarks.scenarios import PROFILES, SCENARIOS, Scenario, fault_plan, scripts
from worker.simulator import POLL_HINTS, Simulator

if TYPE_CHECKING:
    from anyio import CancelScope

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenario = SCENARIOS[args.scenario].shrunk(args.quick)
    profile = PROFILES[args.profile].with_hints(args.hints)
    sim = Simulator(API_KEY, thinking_s=profile.thinking_s, latency_s=profile.latency_s,
                    seed=args.seed, poll_hints=profile.hints,
                    faults=fault_plan(scenario, args.seed))
    report = anyio.run(_serve, sim, scenario, args.seed)
    Path(args.out).write_text(json.dumps(report), encoding="utf-8")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.sim_runner")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--profile", choices=sorted(PROFILES), required=True)
    parser.add_argument("--hints", choices=POLL_HINTS, default=None,
                        help="openai-poll-after-ms mode (default: the profile's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", required=True, help="where the measurements JSON goes")
    return parser


async def _serve(sim: Simulator, scenario: Scenario, seed: int) -> dict[str, Any]:
    started_at: float | None = None
    agents = scenario.protocol == "agents"
    async with sim, anyio.create_task_group() as tg:
        assistant_id = sim.create_assistant(name="bench")
        threads = (agents_sim.create_sessions(sim, scenario, seed) if agents
                   else [sim.create_thread() for _ in range(scenario.runs)])
        send({"base_url": sim.base_url, "api_key": API_KEY, "threads": threads})
        tg.start_soon(_cancel_on_sigterm, tg.cancel_scope)
        commands = await _stdin_lines()
        if await _command(commands) == START:
            started_at = time.monotonic()
            if agents:
                agents_sim.start_sessions(sim, threads)
            else:
                for thread_id, rounds in zip(threads, scripts(scenario, seed), strict=True):
                    sim.create_run(thread_id, assistant_id, rounds=rounds)
            send({"started_at": started_at})
            await _command(commands)  # whatever it says, the system is done
        tg.cancel_scope.cancel()
    if agents:
        return agents_sim.measurements(sim, scenario, started_at)
    return _measurements(sim, scenario, started_at)


async def _stdin_lines() -> asyncio.StreamReader:
    # A pipe reader on the loop, not a thread: a thread blocked in readline() would keep the
    # process alive after SIGTERM.
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _command(reader: asyncio.StreamReader) -> str:
    line = await reader.readline()
    return line.decode().strip() or STOP


async def _cancel_on_sigterm(scope: CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _measurements(sim: Simulator, scenario: Scenario, started_at: float | None) -> dict[str, Any]:
    accepted = [
        [s.run_id, s.round_index, s.at, len(s.tool_outputs),
         sum(output.startswith("Error") for _, output in s.tool_outputs)]
        for s in sim.accepted_submissions()
    ]
    return {
        "started_at": started_at,
        "total_rounds": scenario.total_rounds,
        "total_calls": scenario.total_calls,
        "rounds_visible": [[run_id, index, at] for (run_id, index), at in
                           sim.rounds_visible.items()],
        "accepted": accepted,
        "refused": sum(1 for s in sim.submissions if s.status != 200),
        "request_counts": dict(sim.request_counts),
        "faults_injected": dict(sim.faults_injected),
        "cpu_s": time.process_time(),
    }


if __name__ == "__main__":
    sys.exit(main())

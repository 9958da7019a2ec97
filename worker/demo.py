"""The demo: the simulator, the ready-made tools and the worker in one process, narrated live."""

from __future__ import annotations

import functools
import json
import random
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.config.secret import Secret
from worker.config.settings import Settings
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.simulator import Simulator, ToolCallScript

if TYPE_CHECKING:
    from collections.abc import Callable

    from structlog.typing import EventDict

__all__ = ["run_demo"]

DEMO_KEY = "sk-demo-not-a-secret"
DEMO_PORT = 9464
# The first run's first round waits on a slow call, so the status page has a round in flight
# to show while the demo runs.
SLOW_CALL_S = 3.0

# The model "thinks" 0.4 s between rounds, so the account can be followed as it scrolls.
# What a model might ask the ready-made tools for; a few calls are deliberately wrong, to show
# that bad input becomes a clear output and the round is still submitted whole.
_CALLS = [
    ("current_time", {"timezone": "Europe/Paris"}),
    ("current_time", {"timezone": "Asia/Tokyo"}),
    ("calculate", {"expression": "2 ** 10 + sqrt(144)"}),
    ("calculate", {"expression": "(17 * 3) / 4"}),
    ("sleep", {"seconds": 0.2}),
    ("sleep", {"seconds": 0.05}),
    ("echo", {"text": "hello from the model"}),
]
_BAD_CALLS = [
    ("calculate", "{not json"),
    ("get_stock_price", {"ticker": "ACME"}),
    ("sleep", {"seconds": "soon"}),
    ("calculate", {"expression": "__import__('os')"}),
]


def _script(rng: random.Random) -> list[list[ToolCallScript]]:
    rounds = []
    for _ in range(rng.randint(2, 3)):
        calls = rng.sample(_CALLS, rng.randint(2, 5))
        if rng.random() < 0.3:
            calls.append(rng.choice(_BAD_CALLS))
        rounds.append([
            ToolCallScript(name, args if isinstance(args, str) else json.dumps(args))
            for name, args in calls
        ])
    return rounds


class _Narrator:
    """A log processor that prints one readable line per finished round and drops the rest."""

    def __init__(self, key: str = "run_id") -> None:
        self.key = key  # what a line names: the run, or (Agents API) the session
        self.started = time.monotonic()
        self.rounds_per_run: Counter[str] = Counter()
        self.problems: list[str] = []

    def __call__(self, _logger: object, _method: str, event: EventDict) -> EventDict:
        name = event.get("event")
        if name in ("round submitted", "round not submitted"):
            self._print_round(event)
        elif event.get("level") in ("error", "critical") or name == "round not submitted":
            self.problems.append(str(name))
            print(f"  ! {name}: {event.get('error', '')}", file=sys.stderr)
        raise structlog.DropEvent

    def _print_round(self, event: EventDict) -> None:
        run_id = str(event.get(self.key, "?"))
        self.rounds_per_run[run_id] += 1
        tools = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in event.get("tools", {}).items())
        outcomes = " ".join(f"{k}={v}" for k, v in sorted(event.get("outcomes", {}).items()))
        print(
            f"[{time.monotonic() - self.started:6.2f}s] {run_id:<28} "
            f"round {self.rounds_per_run[run_id]}  {tools:<48} "
            f"{event.get('latency_s', 0) * 1000:6.0f} ms  {event.get('outcome')}  ({outcomes})",
            flush=True,
        )


def _create_runs(sim: Simulator, registry: Registry, rng: random.Random,
                 runs: int) -> tuple[list[str], int]:
    """One thread and one scripted run each; returns the threads and the rounds to expect."""
    assistant_id = sim.create_assistant(name="demo",
                                        tools=[spec.to_openai() for spec in registry])
    threads: list[str] = []
    expected_rounds = 0
    for _ in range(runs):
        thread_id = sim.create_thread()
        script = _script(rng)
        if not threads:
            script[0].append(ToolCallScript("sleep", json.dumps({"seconds": SLOW_CALL_S})))
        expected_rounds += len(script)
        sim.create_run(thread_id, assistant_id, rounds=script)
        threads.append(thread_id)
    return threads, expected_rounds


async def run_demo(*, runs: int = 24, seed: int = 7, port: int = DEMO_PORT,
                   linger_s: float = 0.0, protocol: str = "assistants") -> bool:
    """Process ``runs`` scripted runs (``protocol="agents"``: Agents API sessions) end to end;
    True when every round was submitted once.

    The worker's server (and its status page) listens on ``port`` (0: any free port) while
    the demo runs, and ``linger_s`` longer.
    """
    port = _free_or_any(port)
    narrator = _Narrator("thread_id" if protocol == "agents" else "run_id")
    structlog.configure(processors=[
        structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, narrator,
    ])
    rng = random.Random(seed)  # noqa: S311 - a demo script, not cryptography
    registry = Registry.from_modules(["tool_worker_tools.builtin"])
    async with Simulator(api_key=DEMO_KEY, thinking_s=0.4, seed=seed) as sim:
        if protocol == "agents":
            scene = _agents_scene(sim, registry, rng, runs)
        else:
            scene = _assistants_scene(sim, registry, rng, runs)
        print(f"tool-worker demo: {scene.headline}, simulator at {sim.base_url}, tools: "
              f"{', '.join(t.name for t in registry)}\n", flush=True)
        settings = Settings.model_validate({
            "api": {"base_url": sim.base_url, "max_requests_per_s": 0, **scene.api},
            "watch": {**scene.watch, "active_poll_interval_s": 0.05, "store": "memory"},
            "server": {"host": "127.0.0.1", "port": port},
        })
        worker = Worker(settings.model_copy(update={"api_key": Secret(DEMO_KEY)}), registry)
        started = time.monotonic()
        port = await _run_worker(worker, port, scene.done)
        ok = scene.summary(worker, time.monotonic() - started)
        if linger_s > 0:
            await _linger(worker, port, linger_s)
        return ok


@dataclass(frozen=True, slots=True)
class _Scene:
    """What the demo sets up: the worker's settings, when it is done, how it went."""

    headline: str
    api: dict[str, Any]
    watch: dict[str, Any]
    summary: Callable[[Worker, float], bool]
    done: Callable[[], bool] | None = None  # None: when the worker sees nothing left to do


def _assistants_scene(sim: Simulator, registry: Registry, rng: random.Random,
                      runs: int) -> _Scene:
    threads, expected_rounds = _create_runs(sim, registry, rng, runs)
    return _Scene(f"{runs} runs, {expected_rounds} rounds", {}, {"threads": threads},
                  functools.partial(_summary, sim, expected_rounds=expected_rounds))


async def _run_worker(worker: Worker, port: int, done: Callable[[], bool] | None) -> int:
    """Run the worker until it is idle (or ``done``); returns the status page's port."""
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(worker.run, until_idle=done is None))
        port = worker.server.port if worker.server and worker.server.port else port
        print(f"status page: http://127.0.0.1:{port}/status (live while the demo runs; "
              "--linger 60 keeps it open after)\n", flush=True)
        if done is not None:
            while not done():  # noqa: ASYNC110 - the simulator's state has no event to await
                await anyio.sleep(0.1)
            worker.stop()
    return port


def _agent_turns(rng: random.Random) -> list[list[dict[str, Any]]]:
    """The same kind of script as a run's, as Agents API turns (arguments as JSON objects)."""
    turns = []
    for _ in range(rng.randint(2, 3)):
        calls = rng.sample(_CALLS, rng.randint(2, 5))
        if rng.random() < 0.3:
            calls.append(rng.choice(_BAD_CALLS))
        turns.append([{"name": name, "arguments": args} for name, args in calls])
    return turns


def _agent_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An Assistants function tool (`{"type", "function": {...}}`) as an agent's (flat)."""
    function = tool["function"]
    return {"type": "function", "name": function["name"],
            "description": function.get("description") or "",
            "parameters": function.get("parameters") or {"type": "object", "properties": {}}}


def _agents_scene(sim: Simulator, registry: Registry, rng: random.Random,
                  sessions: int) -> _Scene:
    """One agent with the tools, and scripted sessions of it, each turn a round."""
    agent_id = sim.create_agent("demo", [_agent_tool(spec.to_openai()) for spec in registry])
    session_ids: list[str] = []
    expected_turns = 0
    for _ in range(sessions):
        turns = _agent_turns(rng)
        if not session_ids:
            turns[0].append({"name": "sleep", "arguments": {"seconds": SLOW_CALL_S}})
        expected_turns += len(turns)
        session_ids.append(sim.create_session(agent_id, turns))
    return _Scene(f"{sessions} Agents API sessions, {expected_turns} turns",
                  {"backend": "agents"}, {"sessions": session_ids},
                  functools.partial(_agents_summary, sim, expected_turns=expected_turns),
                  done=sim.all_sessions_idle)


def _agents_summary(sim: Simulator, worker: Worker, elapsed_s: float, *,
                    expected_turns: int) -> bool:
    per_turn = Counter(turn for post in sim.applied_posts() for turn in post.turn_ids)
    duplicates = sum(count - 1 for count in per_turn.values())
    calls = _call_outcomes(worker)
    sessions = sim.agents.sessions()
    idle = sum(1 for session in sessions if session.status == "idle")
    ok = len(per_turn) == expected_turns and duplicates == 0 and idle == len(sessions)
    print(f"\nsummary: {idle} sessions idle, {len(per_turn)}/{expected_turns} turns answered by "
          f"one events request each, {duplicates} duplicates, {sum(calls.values())} tool calls "
          f"({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))}) in {elapsed_s:.2f} s")
    print("demo OK" if ok else "demo FAILED: some turns were not answered exactly once")
    return ok


def _free_or_any(port: int) -> int:
    """``port`` when nothing listens there, else 0 (any free one): a demo should just run."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            print(f"port {port} is in use; the status page gets a free one", flush=True)
            return 0
    return port


async def _linger(worker: Worker, port: int, linger_s: float) -> None:
    """Serve the finished worker's status page a while longer (the worker itself stopped)."""
    from worker.service.server import Server

    if worker.status is None:
        return
    server = Server(worker.settings.server.model_copy(update={"port": port}), worker.metrics,
                    worker.health.readiness, status=worker.status.snapshot)
    print(f"the status page stays up for {linger_s:.0f} s; Ctrl-C ends it", flush=True)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        await anyio.sleep(linger_s)
        tg.cancel_scope.cancel()


def _call_outcomes(worker: Worker) -> Counter[str]:
    calls: Counter[str] = Counter()
    for metric in worker.metrics.tool_calls.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                calls[sample.labels["outcome"]] += int(sample.value)
    return calls


def _summary(sim: Simulator, worker: Worker, elapsed_s: float, *, expected_rounds: int) -> bool:
    accepted = sim.accepted_submissions()
    per_round = Counter((s.run_id, s.round_index) for s in accepted)
    duplicates = sum(count - 1 for count in per_round.values())
    calls = _call_outcomes(worker)
    completed = sum(1 for run_id in {s.run_id for s in accepted}
                    if sim.run(run_id)["status"] == "completed")
    ok = len(per_round) == expected_rounds and duplicates == 0 and sim.all_runs_terminal()
    print(f"\nsummary: {completed} runs completed, {len(per_round)}/{expected_rounds} rounds "
          f"submitted once each, {duplicates} duplicates, {sum(calls.values())} tool calls "
          f"({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))}) in {elapsed_s:.2f} s")
    print("demo OK" if ok else "demo FAILED: some rounds were not submitted exactly once")
    return ok

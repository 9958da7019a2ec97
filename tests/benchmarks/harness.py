"""One benchmark case: a simulator process and one system process, measured from outside."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.benchmarks.process import Child, ChildFailed, Usage
from tests.benchmarks.protocol import API_KEY, GO, START, STOP
from tests.benchmarks.systems import LaunchOptions

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tests.benchmarks.scenarios import Profile, Scenario
    from tests.benchmarks.systems import System

__all__ = ["ROOT", "CaseResult", "Settings", "run_case"]

ROOT = Path(__file__).resolve().parents[2]
_HANDSHAKE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Harness-wide knobs, the same for every case of one invocation."""

    quick: bool
    seed: int
    budget_s: float  # baseline (a)'s time budget
    timeout_s: float  # a system still running after this long is killed
    profile_path: Path | None = None
    worker_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CaseResult:
    scenario: Scenario
    profile: Profile
    system: System
    sim: dict[str, Any]  # the simulator's measurements (see sim_runner)
    usage: Usage  # the system process's
    ready_cpu_s: float  # the system's CPU before the go (start-up and imports)
    sim_usage: Usage


def run_case(scenario: Scenario, profile: Profile, system: System,
             settings: Settings) -> CaseResult:
    """Start the simulator, then the system; let it answer every run; collect both sides."""
    with tempfile.TemporaryDirectory(prefix="tool-worker-bench-") as tmp:
        workdir = Path(tmp)
        out = workdir / "sim.json"
        with Child("simulator", _sim_argv(scenario, profile, settings, out), cwd=ROOT,
                   env=_environment(), stderr_path=workdir / "sim.stderr") as sim:
            hello = sim.read_message(_HANDSHAKE_TIMEOUT_S)
            options = LaunchOptions(workdir, hello["base_url"], hello["threads"],
                                    settings.budget_s, settings.profile_path,
                                    settings.worker_overrides, scenario.protocol,
                                    scenario.rounds)
            try:
                usage, ready = _run_system(system, options, sim, settings.timeout_s)
            except ChildFailed as exc:
                raise ChildFailed(f"{exc}\n{_what_the_simulator_saw(sim, out)}") from None
            sim_usage = _stop(sim)
        measurements = json.loads(out.read_text(encoding="utf-8"))
    return CaseResult(scenario, profile, system, measurements, usage, ready["ready_cpu_s"],
                      sim_usage)


def _stop(sim: Child) -> Usage:
    sim.send(STOP)
    return sim.wait(_HANDSHAKE_TIMEOUT_S)


def _what_the_simulator_saw(sim: Child, out: Path) -> str:
    """After a failed system: how far it got, which tells a hang from a crash."""
    try:
        _stop(sim)
        data = json.loads(out.read_text(encoding="utf-8"))
    except (ChildFailed, OSError, ValueError) as exc:
        return f"(the simulator's measurements are lost too: {exc})"
    if data["started_at"] is None:
        return "the simulator never created the runs"
    last = max((at for _, _, at, _, _ in data["accepted"]), default=data["started_at"])
    return (f"the simulator had accepted {len(data['accepted'])}/{data['total_rounds']} rounds, "
            f"the last {last - data['started_at']:.1f} s after the runs were created")


def _run_system(system: System, options: LaunchOptions, sim: Child,
                timeout_s: float) -> tuple[Usage, dict[str, Any]]:
    with Child(system.name, system.argv(options), cwd=ROOT, env=_environment(),
               stderr_path=options.workdir / "system.stderr") as child:
        ready = child.read_message(_HANDSHAKE_TIMEOUT_S)
        sim.send(START)
        sim.read_message(_HANDSHAKE_TIMEOUT_S)  # the runs exist
        child.send(GO)
        usage = child.wait(timeout_s)
        if usage.exit_code != 0:
            raise child.failure(f"exit code {usage.exit_code}")
    return usage, ready


def _sim_argv(scenario: Scenario, profile: Profile, settings: Settings, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "tests.benchmarks.sim_runner", "--scenario", scenario.name,
            "--profile", profile.name, "--hints", profile.hints, "--seed", str(settings.seed),
            "--out", str(out)]
    return [*argv, "--quick"] if settings.quick else argv


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOL_WORKER__")}
    env.update({"OPENAI_API_KEY": API_KEY, "PYTHONPATH": str(ROOT)})
    return env

"""The three systems under test and how each is started in its own process."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

__all__ = ["SYSTEMS", "TOOL_WORKER_API", "TOOL_WORKER_WATCH", "LaunchOptions", "System"]

# tool-worker's [watch] settings for the benchmark, chosen on purpose:
# - active_poll_interval_s = 0.1: the pace wherever the API gives no openai-poll-after-ms hint
#   (the simulator sends one only with a run that is thinking): a run that list_runs found
#   queued, a run waiting in requires_action. The default 0.5 s
#   makes the first round of a run found by list_runs wait up to 0.5 s (round16 on `remote`:
#   ~620 ms instead of ~310 ms); 0.05 s measured the same as 0.1 s here, for more requests.
# - idle_poll_interval_s = 5.0 (the default): it paces threads whose run has ended (and threads
#   without one). Every scenario's threads go idle within a few seconds of each other and
#   `--once` exits when all are, so few are polled again; 1 s would add up to 1,000 polls/s of
#   finished threads, a longer interval changes nothing here.
# - max_concurrent_polls = 64 (default 16): with 1,000 threads and 50 ms a request, 16 polls in
#   flight cap the worker at 320 polls/s; 64 matches [api] max_connections.
# - [api] max_requests_per_s = 0 (default 100): the baselines have no request budget, and at
#   100 req/s the budget, not the worker, sets every number here. With the default, 1,000
#   finished threads polled every idle_poll_interval_s (200 req/s) keep a poll in flight at
#   every moment, so `--once` never sees all poll slots free and never exits
#   (`--worker-set api.max_requests_per_s=100` shows it; see docs/benchmarks.md).
TOOL_WORKER_API: dict[str, Any] = {"max_requests_per_s": 0}
TOOL_WORKER_WATCH: dict[str, Any] = {
    "active_poll_interval_s": 0.1,
    "idle_poll_interval_s": 5.0,
    "max_concurrent_polls": 64,
}


@dataclass(frozen=True, slots=True)
class LaunchOptions:
    """What a system's command line may depend on."""

    workdir: Path
    base_url: str
    threads: list[str]
    budget_s: float  # baseline (a) only: stop taking new runs after this long
    profile_path: Path | None  # tool-worker only: pyinstrument output
    worker_overrides: Mapping[str, Mapping[str, Any]]  # tool-worker only: config keys


@dataclass(frozen=True, slots=True)
class System:
    name: str
    summary: str
    argv: Callable[[LaunchOptions], list[str]]


def _tool_worker(options: LaunchOptions) -> list[str]:
    config = options.workdir / "worker.toml"
    config.write_text(_tool_worker_toml(options), encoding="utf-8")
    argv = [sys.executable, "-m", "tests.benchmarks.tool_worker_main", "--config", str(config)]
    if options.profile_path is not None:
        argv += ["--profile", str(options.profile_path)]
    return argv


def _tool_worker_toml(options: LaunchOptions) -> str:
    tables: dict[str, dict[str, Any]] = {
        "api": {"base_url": options.base_url, **TOOL_WORKER_API},
        "watch": {"threads": options.threads, **TOOL_WORKER_WATCH},
        "tools": {"modules": ["tests.benchmarks.handlers"]},
        "server": {"enabled": False},
        "logging": {"format": "json", "level": "warning"},
    }
    for section, values in options.worker_overrides.items():
        tables.setdefault(section, {}).update(values)
    # A JSON literal of a string, number, bool or list of strings is also a TOML literal.
    return "".join(
        f"[{section}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        for section, values in tables.items()
    )


def _threads_file(options: LaunchOptions) -> str:
    path = options.workdir / "threads.json"
    path.write_text(json.dumps(options.threads), encoding="utf-8")
    return str(path)


def _baseline_sync(options: LaunchOptions) -> list[str]:
    return [sys.executable, "-m", "tests.benchmarks.baseline_sync", "--base-url",
            options.base_url, "--threads-file", _threads_file(options),
            "--budget-s", str(options.budget_s)]


def _baseline_async(options: LaunchOptions) -> list[str]:
    return [sys.executable, "-m", "tests.benchmarks.baseline_async", "--base-url",
            options.base_url, "--threads-file", _threads_file(options)]


SYSTEMS = {
    s.name: s
    for s in (
        System("tool-worker", "tool-worker run --once (Worker.run(until_idle=True))", _tool_worker),
        System("baseline-a", "sync OpenAI, SDK docs loop, one run at a time", _baseline_sync),
        System("baseline-b", "AsyncOpenAI, all runs concurrently, gather", _baseline_async),
    )
}

"""The systems under test and how each is started in its own process."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

__all__ = ["SYSTEMS", "TOOL_WORKER_SERVER", "UNBUDGETED", "LaunchOptions", "System"]

# tool-worker runs with its default config: nothing tuned. Only what places it in the
# benchmark is set: the simulator's URL, the threads, the handler module and the metrics
# server's port (a free one: the default 9464 may be taken). Logs are the default too: info,
# JSON (stderr is a file). `--worker-set SECTION.KEY=VALUE` changes any key for one
# invocation, and the report's command line shows it.
TOOL_WORKER_SERVER: dict[str, Any] = {"port": 0}
# tool-worker-unbudgeted: the default config but for the request budget (see scenarios).
UNBUDGETED: dict[str, dict[str, Any]] = {"api": {"max_requests_per_s": 0}}


@dataclass(frozen=True, slots=True)
class LaunchOptions:
    """What a system's command line may depend on."""

    workdir: Path
    base_url: str
    threads: list[str]
    budget_s: float  # baseline (a) only: stop taking new runs after this long
    profile_path: Path | None  # tool-worker only: pyinstrument output
    worker_overrides: Mapping[str, Mapping[str, Any]]  # tool-worker only: config keys
    protocol: str = "assistants"  # "agents": `threads` are Agents API sessions
    turns: int = 0  # agents-sdk only: the turns each session takes


@dataclass(frozen=True, slots=True)
class System:
    name: str
    summary: str
    argv: Callable[[LaunchOptions], list[str]]


def _tool_worker(options: LaunchOptions) -> list[str]:
    return _tool_worker_with(options, {})


def _tool_worker_unbudgeted(options: LaunchOptions) -> list[str]:
    return _tool_worker_with(options, UNBUDGETED)


def _tool_worker_with(options: LaunchOptions,
                      config_keys: Mapping[str, Mapping[str, Any]]) -> list[str]:
    config = options.workdir / "worker.toml"
    config.write_text(_tool_worker_toml(options, config_keys), encoding="utf-8")
    argv = [sys.executable, "-m", "tests.benchmarks.tool_worker_main", "--config", str(config)]
    if options.profile_path is not None:
        argv += ["--profile", str(options.profile_path)]
    return argv


def _tool_worker_toml(options: LaunchOptions,
                      config_keys: Mapping[str, Mapping[str, Any]]) -> str:
    agents = options.protocol == "agents"
    tables: dict[str, dict[str, Any]] = {
        "api": {"base_url": options.base_url, **({"backend": "agents"} if agents else {})},
        "watch": {"sessions" if agents else "threads": options.threads},
        "tools": {"modules": ["tests.benchmarks.handlers"]},
        "server": dict(TOOL_WORKER_SERVER),
    }
    for overrides in (config_keys, options.worker_overrides):
        for section, values in overrides.items():
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


def _baseline_stream(options: LaunchOptions) -> list[str]:
    return [sys.executable, "-m", "tests.benchmarks.baseline_stream", "--base-url",
            options.base_url, "--threads-file", _threads_file(options)]


def _agents_sdk(options: LaunchOptions) -> list[str]:
    return [sys.executable, "-m", "tests.benchmarks.baseline_agents", "--base-url",
            options.base_url, "--sessions-file", _threads_file(options),
            "--turns", str(options.turns)]


SYSTEMS = {
    s.name: s
    for s in (
        System("tool-worker", "tool-worker run --once (Worker.run(until_idle=True))", _tool_worker),
        System("tool-worker-unbudgeted", "tool-worker with [api] max_requests_per_s = 0",
               _tool_worker_unbudgeted),
        System("baseline-a", "sync OpenAI, SDK docs loop, one run at a time", _baseline_sync),
        System("baseline-b", "AsyncOpenAI, all runs concurrently, gather", _baseline_async),
        System("baseline-c", "AsyncOpenAI as (b), submissions streamed, next round from the "
               "stream", _baseline_stream),
        System("agents-sdk", "AsyncOpenAI over the Agents API: every session's event stream, "
               "each turn's calls gathered and posted in one events request", _agents_sdk),
    )
}

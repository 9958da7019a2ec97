"""The daemon as a child process: config file, environment, log lines, signals."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import Process

    from worker.simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]
SIM_KEY = "sk-test"


def write_config(path: Path, sim: Simulator, threads: list[str], **sections: dict[str, Any]) -> Path:
    """A TOML config for the simulator's threads; sections override the test defaults."""
    config: dict[str, dict[str, Any]] = {
        "api": {"base_url": sim.base_url, "max_requests_per_s": 0},
        "watch": {"threads": threads, "active_poll_interval_s": 0.05, "idle_poll_interval_s": 0.2},
        "tools": {"modules": ["tests.handlers.sample", "tool_worker_tools.builtin"]},
        "server": {"enabled": False},
        "logging": {"format": "json"},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    lines = []
    for name, values in config.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOL_WORKER__")}
    env.update({"OPENAI_API_KEY": SIM_KEY, "PYTHONPATH": str(ROOT), **extra})
    return env


def command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "worker", "run", "--config", str(config), *args]


class Daemon:
    """A running `tool-worker run` whose JSON log lines can be awaited."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.raw = b""
        self._buffer = b""

    @classmethod
    async def start(cls, config: Path, *args: str, **env: str) -> Daemon:
        process = await anyio.open_process(command(config, *args), env=environment(**env),
                                           cwd=ROOT)
        return cls(process)

    async def wait_for_event(self, event: str, *, timeout_s: float = 20) -> dict[str, Any]:
        """Read log lines until one has this event; fail after ``timeout_s``."""
        with anyio.fail_after(timeout_s):
            while True:
                for line in self.lines:
                    if line.get("event") == event:
                        return line
                if not await self._read():
                    raise AssertionError(
                        f"the daemon exited before logging {event!r}:\n{self.raw.decode()[-2000:]}"
                    )

    async def wait_for_line(self, predicate: Callable[[dict[str, Any]], bool], what: str, *,
                            timeout_s: float = 20) -> dict[str, Any]:
        """Read log lines until one satisfies ``predicate``; fail after ``timeout_s``."""
        with anyio.fail_after(timeout_s):
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                if not await self._read():
                    raise AssertionError(
                        f"the daemon exited before logging {what}:\n{self.raw.decode()[-2000:]}")

    async def _read(self) -> bool:
        assert self.process.stderr is not None
        try:
            chunk = await self.process.stderr.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return False
        self.raw += chunk
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        for line in complete:
            if line.strip():
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    self.lines.append({"event": "(not json)", "text": line.decode()})
        return True

    async def drain(self) -> None:
        """Read log lines until the process exits: run it in a task while a test does other
        things, so a worker that logs much never blocks on a full pipe."""
        while await self._read():
            pass

    def signal(self, signum: signal.Signals = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    async def wait(self, *, timeout_s: float = 30) -> int:
        """Wait for the exit code, reading the remaining log lines."""
        with anyio.fail_after(timeout_s):
            while await self._read():
                pass
            return await self.process.wait()

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]

    async def aclose(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        with anyio.CancelScope(shield=True):
            await self.process.aclose()

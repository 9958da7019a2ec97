"""A child process of the harness: JSON lines over stdio, and its own CPU time and peak RSS.

``os.wait4`` reaps the child and returns the ``rusage`` of that child alone, so every system
(and the simulator) is measured apart even though they run side by side.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

__all__ = ["Child", "ChildFailed", "Usage"]


class ChildFailed(RuntimeError):
    """A child exited, hung or said something unexpected; the message ends with its stderr."""


@dataclass(frozen=True, slots=True)
class Usage:
    """What the kernel counted for one finished child."""

    cpu_s: float  # user + system, every thread, whole life
    max_rss_mb: float
    exit_code: int
    exited_at: float  # time.monotonic() when the harness saw it exit


class Child:
    """``subprocess.Popen`` with line-based messages and a ``wait4`` that returns ``Usage``."""

    def __init__(self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str],
                 stderr_path: Path) -> None:
        self.name = name
        self._stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self._proc = subprocess.Popen(  # noqa: S603 - argv is built by the harness itself
            argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, text=True,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def read_message(self, timeout_s: float) -> dict[str, Any]:
        """The child's next JSON line; ChildFailed if it exits or stays silent.

        Other lines are skipped: a wrapper such as ``py-spy record --`` prints its own.
        """
        stdout = self._proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout_s
        while True:
            ready, _, _ = select.select([stdout], [], [], max(deadline - time.monotonic(), 0))
            line = stdout.readline() if ready else ""
            if not line:
                raise self.failure(f"no message within {timeout_s:.0f} s")
            if line.startswith("{"):
                return dict(json.loads(line))

    def send(self, command: str) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(command + "\n")
            stdin.flush()
        except BrokenPipeError:
            raise self.failure(f"exited before {command!r}") from None

    def wait(self, timeout_s: float) -> Usage:
        """Reap the child (killing it past ``timeout_s``) and return what it used."""
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, rusage = os.wait4(self._proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= deadline:
                self._proc.kill()
                os.wait4(self._proc.pid, 0)
                self._proc.returncode = -9
                raise self.failure(f"still running after {timeout_s:.0f} s; killed")
            time.sleep(0.005)
        exited_at = time.monotonic()
        self._proc.returncode = os.waitstatus_to_exitcode(status)
        return Usage(
            cpu_s=rusage.ru_utime + rusage.ru_stime,
            max_rss_mb=rusage.ru_maxrss / 1024,  # KiB on Linux
            exit_code=self._proc.returncode,
            exited_at=exited_at,
        )

    def close(self) -> None:
        """Kill the child if it still runs; close the pipes and the stderr file."""
        if self._proc.returncode is None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()

    def stderr_tail(self, lines: int = 6, width: int = 300) -> str:
        self._stderr.flush()
        text = self._stderr_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(line[:width] for line in text.splitlines()[-lines:])

    def failure(self, what: str) -> ChildFailed:
        return ChildFailed(f"{self.name}: {what}\n--- stderr (tail) ---\n{self.stderr_tail()}")

"""The line protocol between the harness and its child processes (JSON lines on stdio).

Simulator child:  -> ``{"base_url", "api_key", "threads"}``; <- ``start``;
                  -> ``{"started_at"}`` once the runs exist; <- ``stop`` (or SIGTERM, or EOF):
                  the measurements are written to its ``--out`` file and it exits.
System child:     -> ``{"ready_cpu_s", "ready_at"}`` once imported and set up; <- ``go``;
                  it answers the runs and exits 0.

Every ``*_at`` is ``time.monotonic()``, which on Linux is one clock for every process.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

__all__ = ["API_KEY", "GO", "START", "STOP", "read_command", "send", "wait_for_go"]

API_KEY = "sk-bench-key"
START, STOP, GO = "start", "stop", "go"


def send(message: dict[str, Any]) -> None:
    """Write one JSON line to stdout, for the harness."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def read_command() -> str:
    """The next command line from the harness; ``stop`` at end of input."""
    line = sys.stdin.readline()
    return line.strip() or STOP


def wait_for_go() -> None:
    """Report readiness (and the CPU spent getting there), then block until told to go.

    The harness subtracts ``ready_cpu_s`` from the child's total, so interpreter start-up and
    imports do not count as work.
    """
    send({"ready_cpu_s": time.process_time(), "ready_at": time.monotonic()})
    command = read_command()
    if command != GO:
        raise SystemExit(f"expected {GO!r} from the harness, got {command!r}")

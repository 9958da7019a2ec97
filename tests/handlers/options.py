"""Handlers with per-tool options: process pools, hidden errors, their own output limits."""

from __future__ import annotations

import os

from worker import ToolError, tool

__all__ = ["chatty", "cpu_pid", "cpu_refuses", "cpu_spin", "leaky", "secretive"]


@tool(process=True)
def cpu_pid() -> int:
    """Tell the id of the process the call ran in."""
    return os.getpid()


@tool(process=True, timeout=0.5)
def cpu_spin() -> str:
    """Burn CPU forever, holding the GIL, until the process is killed."""
    while True:
        pass


@tool(process=True)
def cpu_refuses(city: str) -> str:
    """Refuse with a ToolError raised in the worker process."""
    raise ToolError(f"no weather for {city!r}; pass a city name like 'Paris'")


@tool(expose_errors=False)
async def secretive() -> str:
    """Fail with details the model must not see."""
    raise RuntimeError("password=hunter2 rejected by db01.internal")


@tool
async def leaky() -> str:
    """Fail with details, shown to the model as usual."""
    raise RuntimeError("db01.internal is down")


@tool(max_output_chars=300)
async def chatty(times: int) -> str:
    """Say a lot; this tool's outputs are cut at 300 characters."""
    return "blah " * times

"""Built-in tools: time, arithmetic, units and text, plus a few that exercise the worker itself.

``[tools] modules = ["tool_worker_tools.builtin"]`` registers them all; each family lives in its own
module (``tools.clock``, ``tools.calculator``, ``tools.units``, ``tools.text``,
``tools.diagnostics``), which can also be named alone.

Each handler is also an example to copy: typed parameters (bounds in ``Field`` where they
matter), a one-line docstring that the model reads as the tool's description, and a
``ToolError`` whose message tells the model what to do instead.
"""

from __future__ import annotations

from .calculator import calculate
from .clock import current_time
from .diagnostics import describe_call, echo, sleep
from .text import random_number, word_count
from .units import unit_convert

__all__ = [
    "calculate",
    "current_time",
    "describe_call",
    "echo",
    "random_number",
    "sleep",
    "unit_convert",
    "word_count",
]

"""How an Assistants run of the simulator is scripted, and the script a run gets without one.

The scripted "model" of a run makes the rounds of tool calls in `metadata["sim_rounds"]`;
a run without that key calls each function tool of its assistant (or of the run's own
`tools`) once, in one round, with arguments made from the tool's JSON schema: every required
property, a string as "sample", a number as 1, a boolean as true, an enum as its first value.
`"sim_rounds": "[]"` asks for no tool call at all.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from worker.simulator.agents_script import sample_arguments
from worker.simulator.wire import ToolCallScript

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["RUN_SCRIPT_HELP", "default_rounds", "final_answer"]

RUN_SCRIPT_HELP = (
    'script a run with metadata {"sim_rounds": "[[{\\"name\\": \\"echo\\", \\"arguments\\": '
    '{\\"text\\": \\"hi\\"}}], [...]]"}: a JSON list of rounds, each a list of tool calls; '
    "without it a run calls each function tool of its assistant once, with sample arguments "
    '("sim_rounds": "[]" for none). The outputs show in the run\'s final message and at '
    "GET /_sim/runs/{run_id}/outputs"
)

# A long output is cut in the final message; GET /_sim/runs/{id}/outputs has it whole.
_SHOWN_CHARS = 200


def default_rounds(tools: Sequence[Mapping[str, Any]]) -> tuple[tuple[ToolCallScript, ...], ...]:
    """One round calling each function tool once, with arguments its parameters accept."""
    calls = tuple(
        ToolCallScript(str(function["name"]),
                       json.dumps(sample_arguments(function.get("parameters") or {})))
        for tool in tools
        if tool.get("type") == "function"
        for function in (tool.get("function") or {},)
        if isinstance(function.get("name"), str)
    )
    return (calls,) if calls else ()


def final_answer(rounds: int, outputs: Sequence[tuple[int, str, str]]) -> str:
    """The run's last message: how many rounds, and each output it was given."""
    text = f"Done after {rounds} round(s) of tool calls."
    if outputs:
        shown = "; ".join(f"round {index + 1}: {name} -> {_cut(output)}"
                          for index, name, output in outputs)
        text = f"{text} Outputs: {shown}"
    return text


def _cut(output: str) -> str:
    return output if len(output) <= _SHOWN_CHARS else f"{output[:_SHOWN_CHARS]}..."

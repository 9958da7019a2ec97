"""The ready-made tools end to end: the real worker against the simulator, as you test yours.

The README's "Testing your handlers" points here. The top-level conftest.py enables the plugin
(``pytest_plugins = ["worker.pytest_plugin"]``), this module names the handlers once in a
``tool_worker_handlers`` fixture, and each test awaits ``tool_worker.run(rounds)``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from worker.testing import ToolWorker


@pytest.fixture
def tool_worker_handlers() -> list[str]:
    return ["tool_worker_tools.builtin"]


async def test_the_calls_of_a_round_are_answered_in_order(tool_worker: ToolWorker) -> None:
    """Every call of one round gets its own output, in the order of the calls."""
    result = await tool_worker.run([[
        ("calculate", {"expression": "6 * 7"}),
        ("echo", {"text": "hello"}),
        ("word_count", {"text": "one two three"}),
    ]])
    assert result.status == "completed"
    (outputs,) = result.outputs
    assert outputs[:2] == ["42", "hello"]
    assert json.loads(outputs[2])["words"] == 3


async def test_each_round_of_a_run_is_answered(tool_worker: ToolWorker) -> None:
    """A run with two rounds gets both answered, and then completes."""
    result = await tool_worker.run([
        [("unit_convert", {"value": 1, "from_unit": "km", "to_unit": "m"})],
        [("random_number", {"low": 1, "high": 6, "seed": 7}), ("sleep", {"seconds": 0})],
    ])
    assert result.status == "completed"
    assert json.loads(result.outputs[0][0])["result"] == 1000
    assert [call.name for call in result.rounds[1]] == ["random_number", "sleep"]


async def test_bad_calls_get_clear_outputs_and_the_run_completes(tool_worker: ToolWorker) -> None:
    """Broken JSON, a ToolError and a null for a default each give the model a useful answer."""
    result = await tool_worker.run([[
        ("calculate", "{not json"),
        ("calculate", {"expression": "1 / 0"}),
        ("current_time", {"timezone": None}),  # strict mode's null: the default, UTC
    ]])
    assert result.status == "completed"
    bad_json, division, utc = result.outputs[0]
    assert bad_json.startswith("Error: invalid arguments for tool 'calculate': not valid JSON")
    assert division == "division by zero in '1 / 0'"
    assert json.loads(utc)["timezone"] == "UTC"

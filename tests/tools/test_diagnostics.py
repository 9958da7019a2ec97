"""tools.diagnostics: echo, sleep and describe_call, called through worker.testing.call_tool."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tool_worker_tools.diagnostics import describe_call, echo, sleep

from worker.testing import call_tool, capture_logs, fake_context

from .helpers import error_text, ok_json


class TestEcho:
    @pytest.mark.parametrize("text", ["hello", "", '¿Qué tal? 👋\n"quoted" {json}'])
    async def test_returns_the_text_verbatim(self, text: str) -> None:
        """The output is the text itself, not JSON-encoded."""
        result = await call_tool(echo, {"text": text})
        assert (result.outcome, result.output) == ("ok", text)

    @pytest.mark.parametrize(
        ("arguments", "problem"),
        [({}, "text: Field required"), ({"text": 123}, "text: Input should be a valid string")],
    )
    async def test_text_is_a_required_string(self, arguments: dict[str, Any], problem: str) -> None:
        """A missing or non-string text is an invalid argument."""
        text = await error_text(echo, arguments, "invalid_arguments")
        assert problem in text


class TestSleep:
    async def test_reports_how_long_it_slept(self) -> None:
        """The output is the duration the model asked for, in seconds."""
        result = await call_tool(sleep, {"seconds": 0.01})
        assert (result.outcome, result.output) == ("ok", '{"slept_s":0.01}')

    @pytest.mark.parametrize(
        ("seconds", "problem"),
        [
            ("61", "less than or equal to 60"),
            ("-1", "greater than or equal to 0"),
            ("NaN", "NaN is not a JSON value"),
            ('"soon"', "a valid number"),
        ],
    )
    async def test_duration_is_bounded(self, seconds: str, problem: str) -> None:
        """Durations outside 0 to 60 seconds are invalid arguments."""
        text = await error_text(sleep, f'{{"seconds": {seconds}}}', "invalid_arguments")
        assert problem in text

    async def test_is_cut_short_by_the_deadline(self) -> None:
        """A sleep past the call's deadline ends as a timeout, so timeouts can be tested with it."""
        result = await call_tool(sleep, {"seconds": 60}, ctx=fake_context(timeout_s=0.05))
        assert result.outcome == "timeout"
        assert result.output.startswith("Error: the tool 'sleep' timed out")


class TestDescribeCall:
    async def test_reports_the_ids_of_the_call(self) -> None:
        """The handler runs in a worker thread and still sees its call's context."""
        ctx = fake_context(
            thread_id="thread_abc",
            run_id="run_abc",
            tool_call_id="call_abc",
            assistant_id="asst_abc",
            timeout_s=30,
        )
        result = await call_tool(describe_call, {}, ctx=ctx)
        assert result.outcome == "ok", result.output
        data = json.loads(result.output)
        assert 20 < data.pop("seconds_left") <= 30  # on the deadline's clock, not the wall's
        assert data == {
            "thread_id": "thread_abc",
            "run_id": "run_abc",
            "tool_call_id": "call_abc",
            "assistant_id": "asst_abc",
        }

    async def test_logs_through_the_context_logger(self) -> None:
        """ctx.log works from the worker thread."""
        with capture_logs() as logs:
            await ok_json(describe_call, {})
        assert {"event": "describing the call", "log_level": "info"} in [
            {key: entry[key] for key in ("event", "log_level")} for entry in logs
        ]

    async def test_takes_no_arguments(self) -> None:
        """The context is injected; the model has nothing to pass."""
        text = await error_text(describe_call, {"thread_id": "x"}, "invalid_arguments")
        assert "thread_id: unexpected argument" in text

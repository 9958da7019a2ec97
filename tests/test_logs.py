"""Logging: JSON lines with the bound ids, and no secret ever written."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import structlog
from structlog.contextvars import bound_contextvars

from worker.logs import configure_logging, redact_secrets

if TYPE_CHECKING:
    import pytest

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz"


def test_json_lines_carry_the_bound_ids(capsys: pytest.CaptureFixture[str]) -> None:
    """A line logged inside a round carries thread_id, run_id and tool_call_id."""
    configure_logging(json=True, level="info")
    with bound_contextvars(thread_id="thread_1", run_id="run_1"), \
            bound_contextvars(tool_call_id="call_1", tool="add"):
        structlog.get_logger("t").info("tool call answered", outcome="ok")
    line = json.loads(capsys.readouterr().err)
    assert line["event"] == "tool call answered"
    assert (line["thread_id"], line["run_id"], line["tool_call_id"], line["tool"]) == (
        "thread_1", "run_1", "call_1", "add")
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_secrets_are_redacted_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    """Keys in messages, in secret-named fields and in nested values come out as ***."""
    configure_logging(json=True, level="info")
    structlog.get_logger("t").warning(
        f"request failed with Authorization: Bearer {KEY}",
        api_key=KEY,
        headers={"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "assistants=v2"},
        detail=[f"key was {KEY}"],
    )
    out = capsys.readouterr().err
    assert KEY not in out
    line = json.loads(out)
    assert line["api_key"] == "***"
    assert line["headers"] == {"Authorization": "***", "OpenAI-Beta": "assistants=v2"}
    assert line["detail"] == ["key was ***"]
    assert "Bearer ***" in line["event"]


def test_level_filters_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """Below the configured level nothing is written."""
    configure_logging(json=True, level="warning")
    structlog.get_logger("t").info("quiet")
    assert capsys.readouterr().err == ""


def test_console_output_for_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """json=False renders readable console lines, still redacted."""
    configure_logging(json=False, level="info")
    structlog.get_logger("t").info("round submitted", run_id="run_9", token=KEY)
    out = capsys.readouterr().err
    assert "round submitted" in out
    assert "run_9" in out
    assert KEY not in out


def test_redaction_leaves_ordinary_text_alone() -> None:
    """Words that merely look like keys' neighbours are not touched."""
    event = redact_secrets(None, "info", {"event": "skipped 3 tasks", "tool": "sk"})
    assert event == {"event": "skipped 3 tasks", "tool": "sk"}

"""Logging: JSON lines with the bound ids, and no secret ever written."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import structlog
from structlog.contextvars import bound_contextvars

from worker import tool
from worker.observability.logs import configure_logging, redact_secrets, redact_text
from worker.testing import call_tool

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz"
AZURE_KEY = "0123456789abcdef0123456789ABCDEF".lower()  # 32 hex digits, as Azure issues them
# A configured secret of no recognisable shape, and a Redis password.
UNKNOWN_KEY = "sk-proj-CANARY0123456789abcdefghijklmnopqrstuvwxyz"  # a key nobody configured
PLAIN_SECRET = "correct-horse-battery-staple"
REDIS_URL = "redis://:hunter2-redis@cache:6379/0"


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """configure_logging's secrets are process-wide: each test starts and ends without any."""
    yield
    configure_logging(json=True, secrets=())


def fail_with_keys() -> None:
    raise RuntimeError(f"upstream said: key {AZURE_KEY} / {PLAIN_SECRET} / {REDIS_URL} refused")


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


@pytest.mark.parametrize("as_json", [True, False])
def test_a_key_inside_an_exception_never_reaches_the_log(
    capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    """Tracebacks are redacted after they are formatted, in JSON and console output alike."""
    configure_logging(json=as_json, level="info", secrets=[PLAIN_SECRET])
    try:
        fail_with_keys()
    except RuntimeError as exc:
        structlog.get_logger("t").warning("tool handler raised", exc_info=exc)
    out = capsys.readouterr().err
    assert "RuntimeError: upstream said" in out  # the traceback is there...
    assert "fail_with_keys" in out
    for secret in (AZURE_KEY, PLAIN_SECRET, "hunter2-redis"):  # ...without the secrets
        assert secret not in out
    assert "redis://:***@cache:6379/0" in out
    if as_json:
        assert "exception" in json.loads(out)


def test_configured_secrets_are_redacted_in_any_field(capsys: pytest.CaptureFixture[str]) -> None:
    """A configured literal is found wherever it is, however it is shaped; short ones are not."""
    configure_logging(json=True, level="info", secrets=[PLAIN_SECRET, "abc"])
    structlog.get_logger("t").info(f"said {PLAIN_SECRET}", detail={"nested": [PLAIN_SECRET]},
                                   note="abc stays")
    line = json.loads(capsys.readouterr().err)
    assert line["event"] == "said ***"
    assert line["detail"] == {"nested": ["***"]}
    assert line["note"] == "abc stays"


def test_bare_hex_ids_stay_readable() -> None:
    """Fields named *_id keep 32-hex values (some servers issue such ids); text does not."""
    event = redact_secrets(None, "info", {"event": f"key {AZURE_KEY}", "thread_id": AZURE_KEY,
                                          "call": f"call_{AZURE_KEY}"})
    assert event == {"event": "key ***", "thread_id": AZURE_KEY, "call": f"call_{AZURE_KEY}"}


async def test_an_exposed_handler_error_is_redacted_for_the_model() -> None:
    """expose_errors sends the exception text to the model, without the secrets in it."""
    configure_logging(json=True, secrets=[PLAIN_SECRET])

    @tool
    def leaky() -> str:
        """Fails with keys in its message."""
        raise ValueError(f"auth with {KEY} and {AZURE_KEY} and {PLAIN_SECRET} failed")

    output = await call_tool(leaky, {})
    assert output.outcome == "error"
    assert output.output.startswith("Error: the tool 'leaky' failed: ValueError: auth with ***")
    for secret in (KEY, AZURE_KEY, PLAIN_SECRET):
        assert secret not in output.output


def test_redact_text_shapes() -> None:
    """Bearer tokens, sk- keys, 32-hex keys and URL passwords; nothing else."""
    assert redact_text(f"Bearer {PLAIN_SECRET}") == "Bearer ***"
    assert redact_text("postgres://u:p4ss@h/db and https://example.com/a:b") == (
        "postgres://u:***@h/db and https://example.com/a:b")
    assert redact_text(f"req_{AZURE_KEY}") == f"req_{AZURE_KEY}"
    # A key glued to a word ("key_sk-", "xsk-" as an echoing gateway writes it) is still a key;
    # words that merely hold "sk-" are not.
    assert redact_text(f"key_{KEY} and key={KEY}") == "key_*** and key=***"
    assert redact_text(f"x{UNKNOWN_KEY}.") == "x***."
    assert redact_text("risk-assessment task-abcdefgh disk-Cleanup-2024-final") == (
        "risk-assessment task-abcdefgh disk-Cleanup-2024-final")
    assert redact_text("a 31-hex 0123456789abcdef0123456789abcde") == (
        "a 31-hex 0123456789abcdef0123456789abcde")

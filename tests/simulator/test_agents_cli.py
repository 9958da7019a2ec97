"""`tool-worker simulate --protocol agents`: what it refuses and what its help says."""

from __future__ import annotations

import pytest

from worker.cli import EXIT_CONFIG, main


@pytest.mark.parametrize(("argv", "error"), [
    (["--protocol", "agents", "--profile", "azure"], "needs --profile openai"),
    (["--protocol", "agents", "--turns", "[[{nope"], "Expecting property name"),
    (["--protocol", "agents", "--turns", '[[{"arguments": {}}]]'], 'each call needs a "name"'),
    (["--fault-rate", "1.5"], "--fault-rate must be within [0, 1]"),
])
def test_bad_options_are_one_line_errors(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--port", "0", *argv]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert error in err
    assert len(err.strip().splitlines()) == 1


def test_the_help_says_how_to_script_sessions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "metadata['sim_turns'] scripts its turns" in out
    assert '[[{"name": "echo", "arguments": {"text": "hi"}}]]' in out

"""The command line: each command's output and exit code, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_schema import assert_strict_mode
from worker.cli import main


def test_demo_processes_every_run_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """`tool-worker demo` narrates each round and ends with a summary saying all went through."""
    assert main(["demo", "--runs", "5", "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert "status page: http://127.0.0.1:" in out
    assert "5 runs completed" in out
    assert "0 duplicates" in out
    assert out.rstrip().endswith("demo OK")
    assert out.count(" round ") >= 10


def test_demo_serves_agents_api_sessions(capsys: pytest.CaptureFixture[str]) -> None:
    """`tool-worker demo --protocol agents`: the same, each round a session's turn."""
    assert main(["demo", "--protocol", "agents", "--runs", "4", "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert "4 Agents API sessions" in out
    assert "4 sessions idle" in out
    assert "0 duplicates" in out
    assert out.rstrip().endswith("demo OK")
    assert out.count(" sess_") >= 8


def test_tools_list_shows_the_ready_made_tools(capsys: pytest.CaptureFixture[str]) -> None:
    """`tools list` names each tool with its description."""
    assert main(["tools", "list"]) == 0
    out = capsys.readouterr().out
    assert "calculate" in out
    assert "current_time" in out


def test_tools_schema_prints_the_assistants_tools_array(capsys: pytest.CaptureFixture[str]) -> None:
    """`tools schema` prints a JSON array of function tools."""
    assert main(["tools", "schema"]) == 0
    tools = json.loads(capsys.readouterr().out)
    assert all(t["type"] == "function" and t["function"]["parameters"]["type"] == "object"
               for t in tools)
    assert "calculate" in {t["function"]["name"] for t in tools}


def test_the_ready_made_tools_have_strict_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    """Every ready-made tool is printed with "strict": true and a schema strict mode accepts."""
    assert main(["tools", "schema"]) == 0
    for item in json.loads(capsys.readouterr().out):
        assert item["function"]["strict"] is True, item["function"]["name"]
        assert_strict_mode(item["function"]["parameters"])


def test_tools_list_says_why_a_tool_is_not_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tool whose schema cannot be strict is listed with the reason."""
    config = tmp_path / "w.toml"
    config.write_text('[tools]\nmodules = ["tests.handlers.loose"]\n')
    assert main(["tools", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "tune  Tune with any named numbers.",
        ("      (not strict: 'options' is a dict with open keys; use a pydantic model with named "
        "fields)"),
    ]
    assert main(["tools", "schema", "--config", str(config)]) == 0
    assert "strict" not in json.loads(capsys.readouterr().out)[0]["function"]


def test_check_config_reports_what_it_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check-config` validates, imports the handlers and summarizes without showing the key."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-0123456789")
    config = tmp_path / "w.toml"
    config.write_text('[api]\nbase_url = "http://127.0.0.1:8080/v1"\n'
                      '[watch]\nthreads = ["thread_a", "thread_b"]\n')
    assert main(["check-config", "--no-api", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out
    assert "2 thread(s)" in out
    assert f"store:   sqlite at {tmp_path / 'state' / 'watch.sqlite3'}" in out  # STATE_DIRECTORY
    assert "sk-secret" not in out


@pytest.mark.parametrize(
    ("api", "env", "source"),
    [
        ('backend = "azure"\nazure_auth = "api_key"', "AZURE_AI_API_KEY", "key from AZURE_AI_API_KEY"),
        ('backend = "azure"\nazure_auth = "api_key"', "OPENAI_API_KEY", "key from OPENAI_API_KEY"),
        ('backend = "openai"', "OPENAI_API_KEY", "key from OPENAI_API_KEY"),
    ],
)
def test_check_config_names_the_variable_the_key_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    api: str, env: str, source: str,
) -> None:
    """`check-config` says which variable gave the key, for the backend configured."""
    monkeypatch.setenv(env, "k-0123456789")
    config = tmp_path / "w.toml"
    config.write_text(f'[api]\n{api}\nbase_url = "http://127.0.0.1:8080/v1"\n')
    assert main(["check-config", "--no-api", "--config", str(config)]) == 0
    assert source in capsys.readouterr().out


def test_check_config_for_azure_entra_names_the_missing_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """backend = "azure" uses Entra ID by default; without azure-identity that is one clear line."""
    config = tmp_path / "w.toml"
    config.write_text('[api]\nbackend = "azure"\n'
                      'base_url = "https://r.services.ai.azure.com/api/projects/p"\n')
    code = main(["check-config", "--no-api", "--config", str(config)])
    out, err = capsys.readouterr()
    if importlib.util.find_spec("azure") and importlib.util.find_spec("azure.identity"):
        assert code == 0
        assert "credentials from Microsoft Entra ID" in out
    else:
        assert code == 2
        assert "pip install 'tool-worker[azure]'" in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("[tools]\nmodules = ['nope.nothing']\n", 2, "cannot import handler module 'nope.nothing'"),
        ("[server]\nport = 70000\n", 2, "server.port"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    text: str, code: int, message: str,
) -> None:
    """A bad config exits 2 with one line naming the problem."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("TOOL_WORKER__API__BASE_URL", "http://127.0.0.1:8080/v1")
    config = tmp_path / "w.toml"
    config.write_text(text)
    assert main(["check-config", "--no-api", "--config", str(config)]) == code
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_run_without_a_key_says_where_to_put_one(capsys: pytest.CaptureFixture[str]) -> None:
    """`run` with no key exits 2 and names OPENAI_API_KEY."""
    assert main(["run"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_a_busy_port_is_one_line_naming_the_setting_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`run` on a port something else holds exits 2 with one line naming [server] port."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    # run's logging caches each logger it meets; later tests' capture_logs would miss them.
    monkeypatch.setattr("worker.cli.configure_logging", lambda **_: None)
    with socket.socket() as holder, socket.socket() as closed:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        config = tmp_path / "w.toml"
        config.write_text(f'[api]\nbase_url = "http://127.0.0.1:{closed.getsockname()[1]}/v1"\n'
                          f"[server]\nport = {holder.getsockname()[1]}\n")
        assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("tool-worker: configuration error: server.port: cannot listen on")
    assert "[server] port" in line
    assert "Traceback" not in err
    assert "ExceptionGroup" not in err


def test_a_handler_with_an_unsupported_parameter_is_not_an_import_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`tools list` says which tool and parameter to change; the module itself imported."""
    config = tmp_path / "w.toml"
    config.write_text('[tools]\nmodules = ["tests.handlers.callable_param"]\n')
    assert main(["tools", "list", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cannot import" not in err
    assert "handler module 'tests.handlers.callable_param': tool 'apply': parameter 'fn'" in err


def test_the_console_script_imports_a_handler_package_from_the_current_directory(
    tmp_path: Path,
) -> None:
    """`tool-worker tools list` run in a project folder finds ./mypkg, as `python -m` would."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "tools.py").write_text(
        'from worker import tool\n\n\n@tool\ndef greet(name: str) -> str:\n'
        '    """Say hello."""\n    return f"hello {name}"\n')
    (tmp_path / "w.toml").write_text('[tools]\nmodules = ["mypkg.tools"]\n')
    script = Path(sys.executable).parent / "tool-worker"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(script), "tools", "list", "--config", "w.toml"], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("greet  Say hello.")


def test_a_missing_handler_package_names_pip_install_e_and_pythonpath(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """When the package itself is not found, the one line says how to make it importable."""
    config = tmp_path / "w.toml"
    config.write_text('[tools]\nmodules = ["nosuchpkg_0.tools"]\n')
    assert main(["tools", "list", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "No module named 'nosuchpkg_0'" in err
    assert "`pip install -e .`" in err
    assert "PYTHONPATH" in err


def test_the_ready_made_tools_old_module_name_still_works_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`tools.builtin` in a config registers tool_worker_tools.builtin and says to rename it."""
    config = tmp_path / "w.toml"
    config.write_text('[tools]\nmodules = ["tools.builtin"]\n')
    with pytest.warns(FutureWarning, match="'tools.builtin' is now 'tool_worker_tools.builtin'"):
        assert main(["tools", "list", "--config", str(config)]) == 0
    assert "calculate" in capsys.readouterr().out


def test_check_config_example_prints_the_documented_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check-config --example` prints the packaged example, which loads and checks as is."""
    assert main(["check-config", "--example"]) == 0
    text = capsys.readouterr().out
    assert text == (Path(__file__).resolve().parents[1] / "config.example.toml").read_text("utf-8")
    config = tmp_path / "worker.toml"
    config.write_text(text)
    assert main(["check-config", "--config", str(config)]) == 2  # no key in this environment
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_an_unknown_key_points_at_the_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped key's error names the command that lists the keys, which an install has."""
    config = tmp_path / "worker.toml"
    config.write_text("[watch]\nthread = ['thread_a']\n")
    assert main(["tools", "list", "--config", str(config)]) == 2
    assert "tool-worker check-config --example" in capsys.readouterr().err

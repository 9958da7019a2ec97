"""tools sync: an assistant's function tools made to match the registry, end to end."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import pytest

from worker import tool
from worker.cli import main
from worker.handlers.assistant_sync import plan_sync
from worker.handlers.registry import Registry, tool_spec
from worker.simulator import FaultPlan, FaultRule, Simulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

SIM_KEY = "sk-test"
CODE = {"type": "code_interpreter"}
SEARCH = {"type": "file_search"}


def registry() -> Registry:
    return Registry.from_modules(["tests.handlers.options"])


def function(name: str, description: str = "old", **extra: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": {"type": "object"}, **extra}}


def test_plan_sorts_tools_into_added_changed_removed_and_unchanged() -> None:
    """Tools are matched by name: new ones added, differing ones changed, strangers removed."""
    current = registry().get("leaky").to_openai()
    assistant = {"id": "asst_1", "name": "Helper",
                 "tools": [function("chatty"), CODE, function("retired"), current]}
    plan = plan_sync(assistant, registry())
    kinds = {change.name: change.kind for change in plan.changes}
    assert kinds == {"chatty": "change", "retired": "remove", "cpu_pid": "add",
                     "cpu_refuses": "add", "cpu_spin": "add", "secretive": "add"}
    assert plan.unchanged == ("leaky",)


def test_plan_keeps_other_tools_where_they_are() -> None:
    """code_interpreter and file_search keep their places; added tools go at the end."""
    assistant = {"id": "asst_1", "tools": [SEARCH, function("chatty"), CODE]}
    plan = plan_sync(assistant, registry())
    assert plan.tools[0] == SEARCH
    assert plan.tools[1] == registry().get("chatty").to_openai()
    assert plan.tools[2] == CODE
    assert [t["function"]["name"] for t in plan.tools[3:]] == [
        "cpu_pid", "cpu_refuses", "cpu_spin", "leaky", "secretive"]


def test_what_the_api_fills_in_is_not_a_change() -> None:
    """The API shows "strict": false and a null description where none was sent: no difference."""

    @tool
    def tune(options: dict[str, int]) -> None:  # a dict has no strict form
        pass

    spec = tool_spec(tune)
    assert spec is not None
    shown = copy.deepcopy(spec.to_openai())
    shown["function"].update(strict=False, description=None)
    plan = plan_sync({"id": "asst_1", "tools": [shown]}, Registry([spec]))
    assert plan.in_sync
    assert plan.unchanged == ("tune",)


def test_the_diff_is_readable() -> None:
    """describe() sums up, then marks each tool +, ~ or -, with a diff of what changed."""
    assistant = {"id": "asst_1", "name": "Helper", "tools": [function("chatty"), function("old")]}
    lines = plan_sync(assistant, Registry([registry().get("chatty")])).describe()
    assert lines[0] == "assistant asst_1 (Helper): 0 to add, 1 to change, 1 to remove, 0 unchanged"
    assert lines[1] == "  ~ chatty (description, parameters, strict)"
    assert '      -  "description": "old",' in lines
    assert lines[-1] == "  - old"


def test_names_from_the_api_cannot_drive_the_terminal() -> None:
    """An assistant name or tool name with escape sequences (issue #25: they reached the
    operator's terminal) is printed with them as visible text."""
    evil = "\x1b]0;pwned\x07\x1b[2J\u202eevil"
    assistant = {"id": "asst_1", "name": f"Helper{evil}",
                 "tools": [function(f"old{evil}", description=f"d{evil}")]}
    lines = plan_sync(assistant, Registry([])).describe()
    text = "\n".join(lines)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\u202e" not in text
    assert "Helper\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil" in lines[0]


@pytest.fixture
def serve() -> Iterator[Callable[..., Simulator]]:
    """Start simulators in a thread of their own, since the CLI runs its own event loop."""
    with anyio.from_thread.start_blocking_portal() as portal:
        started: list[Simulator] = []

        def start(**options: Any) -> Simulator:
            sim = Simulator(api_key=SIM_KEY, **options)
            portal.call(sim.start)
            started.append(sim)
            return sim

        yield start
        for sim in started:
            portal.call(sim.aclose)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[Simulator], str]:
    monkeypatch.setenv("OPENAI_API_KEY", SIM_KEY)

    def write(sim: Simulator, retries: int = 2) -> str:
        path = tmp_path / "worker.toml"
        path.write_text(f'[api]\nbase_url = "{sim.base_url}"\nmax_retries = {retries}\n'
                        '[tools]\nmodules = ["tests.handlers.options"]\n')
        return str(path)

    return write


def sync(config_file: str, assistant_id: str, *extra: str) -> int:
    return main(["tools", "sync", "--assistant", assistant_id, "--config", config_file, *extra])


def test_sync_updates_the_assistant_and_then_finds_it_in_sync(
    serve: Callable[..., Simulator], config: Callable[[Simulator], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """tools sync writes the registered tools, keeps code_interpreter in place, exits 0."""
    sim = serve()
    assistant_id = sim.create_assistant("Helper", [CODE, function("chatty"), function("retired")])
    assert sync(config(sim), assistant_id) == 0
    out = capsys.readouterr().out
    assert "5 to add, 1 to change, 1 to remove, 0 unchanged" in out
    assert f"updated {assistant_id}" in out
    tools = sim.state.retrieve_assistant(assistant_id)["tools"]
    assert tools[0] == CODE
    assert tools[1:] == [spec.to_openai() for spec in registry()]

    assert sync(config(sim), assistant_id) == 0
    out = capsys.readouterr().out
    assert "0 to add, 0 to change, 0 to remove, 6 unchanged" in out
    assert "in sync: 6 function tool(s)" in out
    assert sim.request_counts["modify_assistant"] == 1


def test_a_dry_run_shows_the_diff_and_changes_nothing(
    serve: Callable[..., Simulator], config: Callable[[Simulator], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--dry-run prints what would change and sends no update."""
    sim = serve()
    before = [CODE, function("retired")]
    assistant_id = sim.create_assistant("Helper", before)
    assert sync(config(sim), assistant_id, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "  + chatty" in out
    assert "  - retired" in out
    assert "dry run: the assistant was not changed" in out
    assert sim.state.retrieve_assistant(assistant_id)["tools"] == before
    assert sim.request_counts["modify_assistant"] == 0


def test_an_unknown_assistant_is_one_line_and_exit_1(
    serve: Callable[..., Simulator], config: Callable[[Simulator], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 404 says the assistant was not found, on one line."""
    sim = serve()
    assert sync(config(sim), "asst_nope") == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"tool-worker: assistant 'asst_nope' not found at {sim.base_url}; "
                   "check the id and the key's project")


def test_an_api_error_is_one_line_and_a_failure(
    serve: Callable[..., Simulator], config: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A failed update exits non-zero with the API's error on one line, and changes nothing."""
    sim = serve(faults=FaultPlan(rules={"modify_assistant": FaultRule(p_5xx=1.0)}))
    assistant_id = sim.create_assistant("Helper", [])
    assert sync(config(sim, retries=0), assistant_id) == 1
    err = capsys.readouterr().err
    assert err.startswith("tool-worker: modify_assistant: HTTP 5")
    assert len(err.strip().splitlines()) == 1
    assert sim.state.retrieve_assistant(assistant_id)["tools"] == []

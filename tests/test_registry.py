"""The registry: @tool specs and options, schemas from hints, modules, entry points, duplicates."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from tests.handlers import options, sample
from worker import ConfigError, ToolContext, ToolNotFound, tool
from worker.handlers.registry import Registry, tool_spec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    Install = Callable[[str, dict[str, str], dict[str, str]], None]


def test_decorated_functions_stay_callable() -> None:
    """@tool returns the function itself, so it can be called and tested directly."""
    assert sample.add(2, 3) == 5


def test_spec_takes_name_description_and_options() -> None:
    """The spec holds the name, the first docstring paragraph, timeout and concurrency."""
    spec = tool_spec(sample.blocking_sleep)
    assert spec is not None
    assert spec.name == "blocking_sleep"
    assert spec.description == "Sleep in a worker thread, as a blocking handler would."
    assert spec.timeout_s == 10.0
    assert spec.max_concurrency == 8
    assert spec.is_async is False
    assert spec.signature.context_param == "ctx"


def test_schema_comes_from_type_hints() -> None:
    """Literal, defaults and required parameters appear in the Assistants tool format, strict."""
    spec = tool_spec(sample.weather)
    assert spec is not None
    assert spec.to_openai() == {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Report a fixed weather.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {
                        "anyOf": [{"enum": ["c", "f"], "type": "string"}, {"type": "null"}],
                        "description": '(default: "c")',
                    },
                },
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


def test_context_parameter_is_not_in_the_schema() -> None:
    """The ToolContext parameter is injected, never asked of the model."""
    spec = tool_spec(sample.describe)
    assert spec is not None
    assert spec.to_openai()["function"]["parameters"]["properties"] == {}


def test_modules_are_imported_and_scanned() -> None:
    """Every @tool of a configured module registers under its name."""
    registry = Registry.from_modules(["tests.handlers.sample"])
    assert {spec.name for spec in registry} >= {"nap", "blocking_sleep", "add", "weather"}
    assert registry.get("add").fn is sample.add


def test_unknown_tool_lists_the_available_ones() -> None:
    """Looking up a missing tool names the tools that exist."""
    registry = Registry.from_modules(["tests.handlers.sample"])
    with pytest.raises(ToolNotFound, match="available tools: add, blocking_sleep"):
        registry.get("nope")


def test_duplicate_names_name_both_places() -> None:
    """Two handlers with one name are a start-up error naming both."""

    @tool(name="add")
    def other_add(a: int) -> int:
        """Another add."""
        return a

    registry = Registry.from_modules(["tests.handlers.sample"])
    with pytest.raises(ConfigError, match=r"tests\.handlers\.sample:add and .*other_add"):
        registry.add(tool_spec(other_add))  # type: ignore[arg-type]


def test_unimportable_module_is_a_config_error() -> None:
    """A module that cannot be imported is named with the reason."""
    with pytest.raises(ConfigError, match="cannot import handler module 'no_such_pkg.tools'"):
        Registry.from_modules(["no_such_pkg.tools"])


@pytest.mark.parametrize(
    "bad",
    [{"timeout": 0}, {"max_concurrency": 0}, {"max_output_chars": 100}, {"name": "two words"}],
)
def test_bad_options_are_rejected(bad: dict[str, object]) -> None:
    """Nonsense timeouts, limits and names fail at decoration time."""
    with pytest.raises(ValueError, match="must"):

        @tool(**bad)  # type: ignore[call-overload, untyped-decorator]
        def handler() -> str:
            return ""


def test_spec_keeps_the_per_tool_options() -> None:
    """max_output_chars, expose_errors and process reach the spec; the defaults change nothing."""
    specs = {spec.name: spec for spec in Registry.from_modules(["tests.handlers.options"])}
    assert specs["chatty"].max_output_chars == 300
    assert specs["secretive"].expose_errors is False
    assert specs["cpu_pid"].process is True
    plain = tool_spec(sample.add)
    assert plain is not None
    assert (plain.max_output_chars, plain.expose_errors, plain.process) == (None, True, False)


def test_process_refuses_a_tool_context_parameter() -> None:
    """A ToolContext cannot cross into another process, so asking for one is refused at once."""
    with pytest.raises(TypeError, match="process=True cannot pass a ToolContext .* 'ctx'"):

        @tool(process=True)
        def crunch(ctx: ToolContext, n: int) -> int:
            return n


def test_process_refuses_async_and_nested_functions() -> None:
    """Only sync functions defined at module level can run in a worker process."""
    with pytest.raises(TypeError, match="process=True runs sync functions"):

        @tool(process=True)
        async def crunch_async(n: int) -> int:
            return n

    with pytest.raises(TypeError, match="defined at module level"):

        @tool(process=True)
        def crunch_nested(n: int) -> int:
            return n


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Install a distribution the way pip does: its modules and a .dist-info on sys.path."""
    created: list[str] = []

    def write(dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
        for name, source in modules.items():
            (tmp_path / f"{name}.py").write_text(source)
            created.append(name)
        info = tmp_path / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[tool_worker.tools]\n{lines}")

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in created:
        sys.modules.pop(name, None)


def handlers_source(*names: str) -> str:
    """A handler module with one trivial tool per name."""
    lines = ["from worker import tool", ""]
    for name in names:
        lines += ["@tool", f"def {name}(a: int) -> int:", f'    """The {name} tool."""',
                  "    return a", ""]
    return "\n".join(lines)


def test_entry_point_modules_are_registered(install: Install) -> None:
    """A module named by a tool_worker.tools entry point registers its tools beside config's."""
    install("forecast-tools", {"forecast": "ep_forecast"},
            {"ep_forecast": handlers_source("forecast", "tides")})
    registry = Registry.discover(["tests.handlers.options"])
    assert {"forecast", "tides", "chatty"} <= {spec.name for spec in registry}


def test_a_duplicate_from_an_entry_point_names_it_and_its_distribution(install: Install) -> None:
    """Clashing with a configured module, the error names both places and the distribution."""
    install("clash-tools", {"clash": "ep_clash"}, {"ep_clash": handlers_source("add")})
    with pytest.raises(ConfigError, match=(
        r"two handlers are named 'add': tests\.handlers\.sample:add and ep_clash:add "
        r"\(from entry point 'clash' in group 'tool_worker\.tools' of distribution "
        r"clash-tools 1\.0\); rename one")):
        Registry.discover(["tests.handlers.sample"])


def test_a_module_both_configured_and_an_entry_point_is_no_duplicate(install: Install) -> None:
    """The same function found twice is one tool."""
    install("twice-tools", {"twice": "tests.handlers.options"}, {})
    registry = Registry.discover(["tests.handlers.options"])
    assert registry.get("chatty").fn is options.chatty


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ep_missing_module", ("cannot import handler module 'ep_missing_module' named by "
                              "entry point 'broken' in group 'tool_worker.tools' of distribution "
                              "broken-tools 1.0: ModuleNotFoundError")),
        ("tests.handlers.options:chatty", ("entry point 'broken' .* must name a module, like "
                                          "'mypkg.tools', not 'tests.handlers.options:chatty'")),
    ],
)
def test_a_broken_entry_point_is_a_config_error(
    install: Install, value: str, message: str
) -> None:
    """An entry point that names no importable module stops the start, naming it."""
    install("broken-tools", {"broken": value}, {})
    with pytest.raises(ConfigError, match=message):
        Registry.discover([])

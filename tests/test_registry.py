"""The registry: @tool specs and options, schemas from hints, module discovery, duplicates."""

from __future__ import annotations

import pytest

from tests.handlers import sample
from worker import ConfigError, ToolContext, ToolNotFound, tool
from worker.registry import Registry, tool_spec


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

"""The registry: @tool specs, schemas from hints, module discovery, duplicates."""

from __future__ import annotations

import pytest

from tests.handlers import sample
from worker import ConfigError, ToolNotFound, tool
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


@pytest.mark.parametrize("options", [{"timeout": 0}, {"max_concurrency": 0}])
def test_bad_options_are_rejected(options: dict[str, float]) -> None:
    """Nonsense timeouts and limits fail at decoration time."""
    with pytest.raises(ValueError, match="must"):

        @tool(**options)  # type: ignore[arg-type]
        def handler() -> str:
            return ""

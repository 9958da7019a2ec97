"""worker.testing for handler authors: run_tools, ToolWorker and the pytest plugin."""

from __future__ import annotations

import pytest

from tests.handlers import options, sample
from worker.config.settings import ToolsSettings
from worker.testing import ToolWorker, run_tools

pytestmark = pytest.mark.e2e


async def test_run_tools_returns_each_rounds_outputs_with_their_calls() -> None:
    """Outputs come back per round and per call, beside the call's name and arguments."""
    result = await run_tools([sample.add, sample.weather], [
        [("add", {"a": 1, "b": 2}), ("weather", {"city": "Oslo", "unit": None})],
        [("add", '{"a": 40}')],
    ])
    assert result.status == "completed"
    assert result.outputs == [["3", '{"city":"Oslo","temperature":21,"unit":"c"}'], ["41"]]
    first = result.rounds[0][0]
    assert (first.name, first.arguments) == ("add", '{"a": 1, "b": 2}')
    assert first.tool_call_id.startswith("call_")


async def test_handlers_may_be_modules_or_module_names() -> None:
    """A module object and a module name register every tool in them."""
    result = await run_tools([options, "tests.handlers.sample"],
                             [[("leaky", {}), ("add", {"a": 1})]])
    assert result.outputs == [["Error: the tool 'leaky' failed: RuntimeError: db01.internal is down",
                               "2"]]


async def test_tools_settings_apply_to_the_worker() -> None:
    """The [tools] settings given to ToolWorker bound the calls it runs."""
    worker = ToolWorker([sample.nap], tools=ToolsSettings(default_timeout_s=0.1))
    result = await worker.run([[("nap", {"seconds": 30})]])
    assert result.outputs == [["Error: the tool 'nap' timed out after 0.1 s."]]


def test_something_that_is_no_tool_is_refused() -> None:
    """Only @tool functions and modules are handlers; an empty list is a mistake too."""
    with pytest.raises(TypeError, match="is not decorated with @tool"):
        ToolWorker([print])
    with pytest.raises(ValueError, match="no tools"):
        ToolWorker([])


PLUGIN_CONFTEST = """
pytest_plugins = ["worker.pytest_plugin"]
"""

USER_TESTS = """
import pytest

from worker import tool


@tool
def shout(text: str) -> str:
    '''Say it loudly.'''
    return text.upper()


@pytest.fixture
def tool_worker_handlers():
    return [shout]


@pytest.mark.anyio
async def test_shout(tool_worker):
    result = await tool_worker.run([[("shout", {"text": "hi"})]])
    assert result.outputs == [["HI"]]
"""


def test_the_plugin_serves_a_users_own_tests(pytester: pytest.Pytester) -> None:
    """In a project that enables the plugin, a tool_worker test runs the user's handler."""
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(test_user=USER_TESTS)
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_the_plugin_says_when_no_handlers_are_named(pytester: pytest.Pytester) -> None:
    """Without a tool_worker_handlers fixture the test errors, saying how to name them."""
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(test_user="def test_it(tool_worker):\n    pass\n")
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a fixture named tool_worker_handlers*"])


USER_TESTS_WITH_RESOURCES = """
from collections.abc import AsyncIterator

import pytest

from worker import resource, tool


class Store:
    def __init__(self, name):
        self.name = name


@resource
async def store() -> AsyncIterator[Store]:
    raise RuntimeError("the real store is never opened in these tests")
    yield Store("real")


@tool
async def where(store: Store) -> str:
    '''Which store answers.'''
    return store.name


@pytest.fixture
def tool_worker_handlers():
    return [where]


@pytest.fixture
def tool_worker_resources():
    return {Store: Store("fake")}


@pytest.mark.anyio
async def test_where(tool_worker):
    result = await tool_worker.run([[("where", {})]])
    assert result.outputs == [["fake"]]
"""


def test_the_plugin_replaces_resources_from_a_fixture(pytester: pytest.Pytester) -> None:
    """A tool_worker_resources fixture hands its fakes to the handlers; the real one never opens."""
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(test_user=USER_TESTS_WITH_RESOURCES)
    pytester.runpytest_inprocess().assert_outcomes(passed=1)

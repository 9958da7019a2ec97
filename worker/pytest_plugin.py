"""pytest plugin: a ``tool_worker`` fixture for end-to-end tests of your handlers.

Enable it in your top-level ``conftest.py`` and name your handlers once::

    pytest_plugins = ["worker.pytest_plugin"]

    @pytest.fixture
    def tool_worker_handlers():
        return ["mypkg.tools"]          # modules, module names or @tool functions

Then ``result = await tool_worker.run([[("get_weather", {"city": "Oslo"})]])`` in a test.
Override ``tool_worker_resources`` (``{Database: FakeDatabase()}``) to replace resources.
The fixtures are sync, so any async test runner (anyio's, pytest-asyncio) can await ``run``;
for anyio's, the plugin sets ``anyio_backend`` to asyncio, since the worker runs on aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from worker.testing import ToolWorker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import ModuleType

__all__ = ["anyio_backend", "tool_worker", "tool_worker_handlers", "tool_worker_resources"]


@pytest.fixture
def anyio_backend() -> str:
    """asyncio: the worker runs on aiohttp, which has no trio backend (override to change)."""
    return "asyncio"


@pytest.fixture
def tool_worker_handlers() -> Iterable[Callable[..., Any] | str | ModuleType]:
    """The handlers ``tool_worker`` runs; override this fixture to name yours."""
    pytest.fail(
        "the tool_worker fixture needs handlers: define a fixture named tool_worker_handlers "
        "in your conftest.py that returns your @tool functions or module names",
        pytrace=False,
    )


@pytest.fixture
def tool_worker_resources() -> Mapping[type[Any], object]:
    """Values that replace ``@resource`` s by type; none by default (the real ones start)."""
    return {}


@pytest.fixture
def tool_worker(
    tool_worker_handlers: Iterable[Callable[..., Any] | str | ModuleType],
    tool_worker_resources: Mapping[type[Any], object],
) -> ToolWorker:
    """The real worker with ``tool_worker_handlers``, against the simulator; ``await .run(...)``."""
    return ToolWorker(tool_worker_handlers, resources=tool_worker_resources)

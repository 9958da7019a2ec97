"""The public surface is small and pinned: users import only what is listed here."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import worker


def test_public_names_are_pinned() -> None:
    """worker.__all__ is exactly the documented public API, sorted."""
    assert worker.__all__ == [
        "ApiConnectionError",
        "ApiError",
        "ApiStatusError",
        "ApiTimeout",
        "AuthError",
        "ConfigError",
        "CoordinationError",
        "NotFound",
        "RateLimited",
        "ResourceError",
        "RunNotActionable",
        "ToolArgumentsError",
        "ToolContext",
        "ToolError",
        "ToolNotFound",
        "WorkerError",
        "__version__",
        "resource",
        "tool",
    ]
    for name in worker.__all__:
        assert hasattr(worker, name)


def test_nothing_public_is_exposed_outside_all() -> None:
    """A name reachable as ``worker.<name>`` that looks public is in ``__all__``.

    Submodules do not count: the import system sets ``worker.config.loading`` and the rest as a side
    effect of importing them, and each declares its own ``__all__``. Anything else, such as a
    helper or a stray ``import json`` in ``worker/__init__.py``, is either exported or named
    with a leading underscore.
    """
    for info in pkgutil.walk_packages(worker.__path__, "worker."):
        if info.name != "worker.__main__":
            importlib.import_module(info.name)  # so every submodule is an attribute, every time
    exposed = {
        name
        for name, value in vars(worker).items()
        if not name.startswith("_")
        and not (isinstance(value, ModuleType) and value.__name__ == f"worker.{name}")
        and type(value).__module__ != "__future__"  # `from __future__ import annotations`
    }
    assert sorted(exposed - set(worker.__all__)) == []


def test_every_module_declares_all() -> None:
    """Each module under worker/ says what it exports."""
    missing = []
    for info in pkgutil.walk_packages(worker.__path__, "worker."):
        if info.name == "worker.__main__":
            continue
        module = importlib.import_module(info.name)
        if not hasattr(module, "__all__"):
            missing.append(info.name)
    assert missing == []


def test_every_error_is_a_worker_error() -> None:
    """The exception tree has one root; ToolError is control flow for handlers, not a failure."""
    for name in worker.__all__:
        value = getattr(worker, name)
        if isinstance(value, type) and issubclass(value, Exception) and name != "ToolError":
            assert issubclass(value, worker.WorkerError), name
    assert not issubclass(worker.ToolError, worker.WorkerError)

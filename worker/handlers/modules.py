"""Importing a handler module named in the config: the ready-made tools' old name, and a
hint when the user's own package is not on the path."""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from worker.errors import ConfigError
from worker.handlers.definition import DefinitionError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["import_handler_module"]

# The ready-made tools were installed as the top-level package ``tools`` until 0.2, which
# collided with any user's own ``tools``; they are ``tool_worker_tools`` now.
_OLD, _NEW = "tools", "tool_worker_tools"


def import_handler_module(module_name: str, named_by: str, key: str | None) -> ModuleType:
    """Import ``module_name``; ``named_by`` and ``key`` say where the name came from.

    Raises:
        ConfigError: the module cannot be imported, or one of its handlers cannot be served.
    """
    module_name = _renamed(module_name)
    try:
        return importlib.import_module(module_name)
    except DefinitionError as exc:  # the module imports; one of its handlers cannot be served
        raise ConfigError(f"handler module {module_name!r}{named_by}: {exc}", key=key) from exc
    except Exception as exc:
        raise ConfigError(
            f"cannot import handler module {module_name!r}{named_by}: {type(exc).__name__}: "
            f"{exc}{_path_hint(module_name, exc)}",
            key=key,
        ) from exc


def _renamed(module_name: str) -> str:
    """``tools.x`` → ``tool_worker_tools.x`` with a warning, unless ``tools`` is the user's own."""
    head, dot, rest = module_name.partition(".")
    if head != _OLD or not _is_ours_or_missing(_OLD):
        return module_name
    new = f"{_NEW}{dot}{rest}"
    warnings.warn(f"handler module {module_name!r} is now {new!r}; the old name still works "
                  "until 0.3, change it in [tools] modules", FutureWarning, stacklevel=4)
    return new


def _is_ours_or_missing(name: str) -> bool:
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return True
    ours = importlib.util.find_spec(_NEW)
    if found is None or found.origin is None:
        return found is None
    return ours is not None and ours.origin is not None \
        and Path(found.origin).parent == Path(ours.origin).parent


def _path_hint(module_name: str, exc: Exception) -> str:
    """How to make a missing package of the user's own importable."""
    top = module_name.partition(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or exc.name != top:
        return ""  # the package is there; something inside it failed, and the error says what
    return (f"; install the package that holds it into this environment (`pip install -e .` "
            f"in the package's project folder) or add the folder that holds {top}/ to "
            f"PYTHONPATH (the current directory, {os.getcwd()}, is searched)")

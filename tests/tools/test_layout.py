"""tools/ stays an example worth copying: small modules, short functions, only the public API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import worker

TOOLS = Path(__file__).resolve().parents[2] / "tools"
MODULES = sorted(TOOLS.glob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40  # from the first decorator to the last line, docstring included
PUBLIC_WORKER_MODULES = {"worker", "worker.testing"}


def test_the_tools_are_found() -> None:
    """The checks below look at real files."""
    assert TOOLS / "builtin.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_modules_and_functions_are_short(path: Path) -> None:
    """No module over 400 lines and no function over 40: a family outgrowing that is split."""
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    too_long = [
        f"{node.name} ({_length(node)} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and _length(node) > MAX_FUNCTION_LINES
    ]
    assert too_long == []


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_only_the_public_api_of_worker_is_imported(path: Path) -> None:
    """Handlers use what handler authors get: ``worker`` and ``worker.testing``, nothing inside."""
    imported, from_worker_package = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module)
            if node.module == "worker":  # `from worker import config` would reach past __all__
                from_worker_package |= {alias.name for alias in node.names}
    assert {name for name in imported if name.split(".")[0] == "worker"} <= PUBLIC_WORKER_MODULES
    assert from_worker_package <= set(worker.__all__)


def _length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
    assert node.end_lineno is not None
    return node.end_lineno - start + 1

"""tools/ stays an example worth copying: only the public API (lengths: tests/test_layout.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import worker

TOOLS = Path(__file__).resolve().parents[2] / "tools"
MODULES = sorted(TOOLS.glob("*.py"))
PUBLIC_WORKER_MODULES = {"worker", "worker.testing"}


def test_the_tools_are_found() -> None:
    """The checks below look at real files."""
    assert TOOLS / "builtin.py" in MODULES


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

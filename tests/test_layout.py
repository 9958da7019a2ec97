"""worker/ and tools/ stay readable: one concept a module, short functions, a thin daemon (#14)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "worker"
MODULES = sorted([*WORKER.rglob("*.py"), *(ROOT / "tools").glob("*.py")])
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40  # from the first decorator to the last line, docstring included
MAX_DAEMON_LINES = 149  # the daemon wires the stages and owns the lifecycle, nothing more
MAX_TOP_LEVEL_MODULES = 14  # the rest lives in packages named for what they serve
PACKAGES = ("api", "rounds", "handlers", "service", "observability", "config", "simulator")


def test_the_package_is_found() -> None:
    """The checks below look at real files."""
    assert WORKER / "daemon.py" in MODULES
    assert ROOT / "tools" / "builtin.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_modules_and_functions_are_short(path: Path) -> None:
    """No module over 400 lines and no function over 40: a concept outgrowing that is split."""
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    too_long = [
        f"{node.name} ({_length(node)} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and _length(node) > MAX_FUNCTION_LINES
    ]
    assert too_long == []


def test_the_top_level_stays_small() -> None:
    """worker/ holds the entry points and shared types; everything else lives in a package."""
    top = sorted(path.name for path in WORKER.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    packages = sorted(path.parent.name for path in WORKER.glob("*/__init__.py"))
    assert packages == sorted(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_it_holds(package: str) -> None:
    """A package's docstring tells a reader what lives there and what it may import."""
    tree = ast.parse((WORKER / package / "__init__.py").read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring is not None
    assert "import" in docstring.lower()


def test_the_daemon_is_thin() -> None:
    """daemon.py reads as wiring; a round's path lives in rounds/pipeline.py."""
    assert len((WORKER / "daemon.py").read_text(encoding="utf-8").splitlines()) <= MAX_DAEMON_LINES


def _length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
    assert node.end_lineno is not None
    return node.end_lineno - start + 1


def test_the_wheel_lists_every_package_and_installs_the_tools_under_their_own_name() -> None:
    """pyproject's package list names each worker package; tools/ installs as
    tool_worker_tools, never as a top-level ``tools`` that would shadow a user's own."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in WORKER.rglob("__init__.py")}
    assert set(setuptools["packages"]) == {*found, "tool_worker_tools"}
    assert setuptools["package-dir"] == {"tool_worker_tools": "tools"}

"""The simulator's public surface is pinned, and it stays independent of the rest of `worker`."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import worker.simulator


def test_public_names() -> None:
    assert worker.simulator.__all__ == [
        "POLL_HINTS", "QUIRKS", "RUN_SCRIPT_HELP", "SCRIPT_HELP", "CallScript", "EventsPost",
        "FaultPlan",
        "FaultRule", "Simulator", "Submission", "ToolCallScript", "TurnScript", "serve_forever",
    ]
    for name in worker.simulator.__all__:
        assert getattr(worker.simulator, name).__doc__


def test_every_module_has_all_and_imports_only_the_simulator() -> None:
    package = Path(worker.simulator.__file__).parent
    for info in pkgutil.iter_modules([str(package)]):
        module = importlib.import_module(f"worker.simulator.{info.name}")
        assert isinstance(module.__all__, list), info.name
        tree = ast.parse((package / f"{info.name}.py").read_text(encoding="utf-8"))
        imported = {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        } | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        foreign = {m for m in imported if m.startswith("worker") and not m.startswith("worker.simulator")}
        assert not foreign, f"worker.simulator.{info.name} imports {foreign}"

"""tool_worker_tools.builtin: the module named in the default config registers every family of tools."""

from __future__ import annotations

from tool_worker_tools import builtin

from worker.testing import ToolWorker


def test_every_tool_is_exported_with_a_one_line_description() -> None:
    """The docstring is what the model reads, so each tool has one, on one line."""
    assert sorted(builtin.__all__) == builtin.__all__
    for name in builtin.__all__:
        doc = getattr(builtin, name).__doc__
        assert doc, name
        assert "\n" not in doc.strip(), name


def test_the_module_registers_every_family() -> None:
    """Naming tool_worker_tools.builtin registers the tools of every family module, and nothing else."""
    registered = [spec.name for spec in ToolWorker(["tool_worker_tools.builtin"]).registry]
    assert registered == builtin.__all__

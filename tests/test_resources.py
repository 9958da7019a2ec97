"""@resource: started once before the worker serves, injected by type, closed after the drain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import pytest

from tests.conftest import make_settings
from tests.handlers import resourced
from tests.handlers.resourced import EVENTS, Ledger, Pool, balance, pool_name
from worker import ResourceError, resource, tool
from worker.cli import main
from worker.daemon import Worker
from worker.handlers.registry import Registry, tool_spec
from worker.testing import ToolWorker, call_tool, run_tools

if TYPE_CHECKING:
    from pathlib import Path


class Session:
    """No resource provides it."""


@pytest.fixture(autouse=True)
def _forget_events() -> None:
    EVENTS.clear()


class TestInTheWorker:
    @pytest.mark.e2e
    async def test_resources_open_in_order_before_calls_and_close_in_reverse_after(self) -> None:
        """The pool, then the ledger on it, open once; handlers share them; both close after."""
        result = await run_tools([balance, pool_name], [
            [("balance", {"account": "a"}), ("pool_name", {})],
            [("balance", {"account": "b"})],
        ])
        assert result.outputs[0][0] == "a on real"
        assert result.outputs[0][1].startswith("real for call_")
        assert result.outputs[1] == ["b on real"]
        assert EVENTS == ["pool opened", "ledger opened on real", "ledger closed", "pool closed"]

    @pytest.mark.e2e
    async def test_a_tool_worker_takes_replacements(self) -> None:
        """ToolWorker(resources=...) hands the fake to handlers; the real one never opens."""
        worker = ToolWorker([balance], resources={Ledger: Ledger(Pool("fake"))})
        result = await worker.run([[("balance", {"account": "a"})]])
        assert result.outputs == [["a on fake"]]
        assert EVENTS == []

    def test_only_the_resources_of_registered_tools_start(self) -> None:
        """A worker starts the resources its tools take (and theirs), and no others."""
        assert Registry.from_modules(["tests.handlers.sample"]).resources() == []
        for handler, started in ((pool_name, ["pool"]), (balance, ["pool", "ledger"])):
            spec = tool_spec(handler)
            assert spec is not None
            assert [r.name for r in Registry([spec]).resources()] == started

    async def test_a_resource_that_fails_stops_the_worker_before_any_request(self) -> None:
        """Worker.run raises ResourceError naming the resource and the cause."""
        settings = make_settings(api={"base_url": "http://127.0.0.1:9/v1"},
                                 server={"enabled": False},
                                 tools={"modules": ["tests.handlers.broken_resource"]})
        worker = Worker(settings, Registry.from_modules(settings.tools.modules))
        with pytest.raises(ResourceError, match=r"resource 'model' failed to start: OSError"):
            await worker.run(until_idle=True)


class TestCallTool:
    async def test_replacements_are_handed_to_the_handler(self) -> None:
        """call_tool(resources={Type: value}) injects the value; nothing real opens."""
        output = await call_tool(balance, {"account": "x"},
                                 resources={Ledger: Ledger(Pool("fake"))})
        assert output.output == "x on fake"
        assert EVENTS == []

    async def test_resources_not_replaced_are_started_for_the_call(self) -> None:
        """A resource not replaced opens for the call and closes after it."""
        output = await call_tool(balance, {"account": "x"}, resources={Pool: Pool("fake")})
        assert output.output == "x on fake"
        assert EVENTS == ["ledger opened on fake", "ledger closed"]


class TestDeclaring:
    def test_resource_parameters_are_not_arguments(self) -> None:
        """The model never sees a resource parameter in the schema."""
        spec = Registry.from_modules(["tests.handlers.resourced"]).get("balance")
        assert list(spec.signature.parameters["properties"]) == ["account"]
        assert spec.signature.resources == (("ledger", Ledger),)

    def test_a_resource_without_a_return_type_is_refused(self) -> None:
        """The yielded type is the key, so it must be annotated."""
        with pytest.raises(TypeError, match="must be annotated as returning AsyncIterator"):
            @resource
            async def nameless():
                yield 1

    def test_a_parameter_of_an_undeclared_type_says_to_declare_it_first(self) -> None:
        """A type that is neither JSON nor a resource yet is refused, naming the fix."""
        with pytest.raises(TypeError, match="import the module that declares it"):
            @tool
            async def fetch(session: Session) -> str:
                return ""

    def test_process_handlers_cannot_take_resources(self) -> None:
        """A resource cannot be pickled to another process."""
        with pytest.raises(TypeError, match="cannot pass resources to another process"):
            @tool(process=True)
            def crunch(pool: Pool) -> str:
                return pool.name

    def test_a_second_resource_for_one_type_is_refused(self) -> None:
        """Two resources providing the same type would make injection ambiguous."""
        with pytest.raises(TypeError, match="two resources provide Pool"):
            @resource
            def other_pool() -> AbstractAsyncContextManager[Pool]:
                raise NotImplementedError

    def test_a_resource_may_only_take_resources(self) -> None:
        """A factory parameter must be a resource declared before it."""
        with pytest.raises(TypeError, match="parameter 'size' must be annotated"):
            @resource
            async def sized(size: int) -> AsyncIterator[bytes]:
                yield bytes(size)


class TestCli:
    def test_tools_list_names_each_tools_resources_and_their_order(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`tools list` shows which tools take resources, and the start order."""
        config = tmp_path / "w.toml"
        config.write_text('[tools]\nmodules = ["tests.handlers.resourced"]\n')
        assert main(["tools", "list", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "(resources: ledger)" in out
        assert "resources, started in this order and closed in reverse:" in out
        assert out.index("  pool  tests.handlers.resourced.Pool") < out.index("  ledger  ")

    @pytest.mark.no_blockbuster
    def test_run_with_a_failing_resource_is_one_line_and_exit_2(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`tool-worker run` stops at start: one line naming the resource, exit code 2."""
        monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
        config = tmp_path / "w.toml"
        config.write_text('[api]\nbase_url = "http://127.0.0.1:9/v1"\n[server]\nenabled = false\n'
                          '[tools]\nmodules = ["tests.handlers.broken_resource"]\n')
        assert main(["run", "--config", str(config)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == ("tool-worker: resource 'model' failed to start: "
                           "OSError: no weights at /models/m.bin")


def test_the_handlers_module_is_importable_twice() -> None:
    """Re-importing a module re-declares its resources without a conflict."""
    import importlib

    importlib.reload(resourced)

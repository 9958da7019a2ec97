"""Tracing: each round a trace of the expected shape, with the logs' ids; free when off."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.conftest import make_settings
from tests.e2e.conftest import calls, start_runs
from worker.config.settings import TracingSettings
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.observability.otel import OtelTracing
from worker.observability.tracing import NO_TRACING, Attempts, open_tracing
from worker.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from opentelemetry.sdk.trace import ReadableSpan

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("tests.handlers.sample", "tests.handlers.traced")


@pytest.fixture(scope="session")
def _global_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """One SDK provider for the session, global so that handlers' own spans reach it too."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # settable once per process
    return provider, exporter


@pytest.fixture
def spans(_global_provider: tuple[TracerProvider, InMemorySpanExporter]
          ) -> Iterator[InMemorySpanExporter]:
    exporter = _global_provider[1]
    exporter.clear()
    yield exporter
    exporter.clear()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(api_key="sk-test", seed=3) as simulator:
        yield simulator


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Log events with the context merged in, as the real chain does (cached loggers too)."""
    with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]) as entries:
        yield entries


async def run_traced(sim: Simulator, script: list[Any], *, log_arguments: bool = False
                     ) -> tuple[Worker, str]:
    threads, runs = start_runs(sim, [script])
    settings = make_settings(
        api={"base_url": sim.base_url, "max_requests_per_s": 0},
        watch={"threads": threads, "active_poll_interval_s": 0.02, "idle_poll_interval_s": 0.2},
        tools={"modules": list(MODULES)}, server={"enabled": False},
        logging={"log_arguments": log_arguments},
    )
    tracing = OtelTracing(trace.get_tracer_provider(), log_arguments=log_arguments)
    worker = Worker(settings, Registry.from_modules(MODULES), tracing=tracing)
    with anyio.fail_after(20):
        await worker.run(until_idle=True)
    return worker, runs[0]


def traces(exported: tuple[ReadableSpan, ...]) -> list[list[ReadableSpan]]:
    """The spans grouped by trace, traces in the order their root started."""
    by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in exported:
        by_trace[span.context.trace_id].append(span)
    ordered = sorted(by_trace.values(), key=lambda s: min(x.start_time or 0 for x in s))
    return [sorted(group, key=lambda x: x.start_time or 0) for group in ordered]


def children(group: list[ReadableSpan], parent: ReadableSpan) -> list[str]:
    return sorted(s.name for s in group if s.parent is not None
                  and s.parent.span_id == parent.context.span_id)


TWO_ROUNDS = [calls(("add", {"a": 1, "b": 2}), ("lookup_order", {"order_id": "o-1"})),
              calls(("add", {"a": 40}))]


class TestTraceShape:
    async def test_a_two_round_run_is_two_traces_of_the_expected_shape(
        self, sim: Simulator, spans: InMemorySpanExporter, logs: list[dict[str, Any]]
    ) -> None:
        """Round: poll|stream, claim, one span per call (the handler's own inside), submit."""
        _, run_id = await run_traced(sim, TWO_ROUNDS)
        first, second = traces(spans.get_finished_spans())
        root1 = next(s for s in first if s.parent is None)
        root2 = next(s for s in second if s.parent is None)
        assert (root1.name, root2.name) == ("round", "round")
        assert children(first, root1) == ["claim", "execute_tool add",
                                          "execute_tool lookup_order", "poll",
                                          "submit_tool_outputs"]
        assert children(second, root2) == ["claim", "execute_tool add", "stream",
                                           "submit_tool_outputs"]
        assert root1.attributes is not None
        assert root2.attributes is not None
        assert (root1.attributes["run_id"], root1.attributes["found_by"],
                root1.attributes["outcome"], root1.attributes["tool_calls"]) == (
            run_id, "poll", "ok", 2)
        assert (root2.attributes["found_by"], root2.attributes["outcome"]) == ("stream", "ok")
        handler = next(s for s in first if s.name == "SELECT orders")
        lookup = next(s for s in first if s.name == "execute_tool lookup_order")
        assert handler.parent is not None
        assert handler.parent.span_id == lookup.context.span_id
        # The stream event that found round 2 links to round 1's submission.
        stream = next(s for s in second if s.name == "stream")
        submit1 = next(s for s in first if s.name == "submit_tool_outputs")
        assert [link.context.span_id for link in stream.links] == [submit1.context.span_id]

    async def test_call_spans_carry_ids_outcome_and_attempt_but_no_arguments(
        self, sim: Simulator, spans: InMemorySpanExporter
    ) -> None:
        """thread_id, run_id, tool_call_id (the API's) as attributes; arguments stay out."""
        _, run_id = await run_traced(sim, TWO_ROUNDS)
        submitted = {call_id for s in sim.accepted_submissions(run_id)
                     for call_id, _ in s.tool_outputs}
        calls_ = [s for s in spans.get_finished_spans() if s.name.startswith("execute_tool")]
        assert {s.attributes["tool_call_id"] for s in calls_ if s.attributes} == submitted
        for span in calls_:
            attributes = dict(span.attributes or {})
            assert attributes["outcome"] == "ok"
            assert attributes["attempt"] == 1
            assert "arguments" not in attributes
            root = next(s for s in spans.get_finished_spans()
                        if s.context.trace_id == span.context.trace_id and s.parent is None)
            assert root.attributes is not None
            assert root.attributes["run_id"] == run_id

    async def test_arguments_are_recorded_only_with_log_arguments(
        self, sim: Simulator, spans: InMemorySpanExporter
    ) -> None:
        """[logging] log_arguments = true puts the model's arguments on the call's span."""
        await run_traced(sim, [calls(("add", {"a": 5}))], log_arguments=True)
        call = next(s for s in spans.get_finished_spans() if s.name == "execute_tool add")
        assert call.attributes is not None
        assert call.attributes["arguments"] == '{"a": 5}'

    async def test_a_failed_call_marks_its_span_as_an_error(
        self, sim: Simulator, spans: InMemorySpanExporter
    ) -> None:
        """A handler's exception: the call's span has status ERROR and the outcome."""
        await run_traced(sim, [calls(("boom", {}), ("add", {"a": 1}))])
        boom = next(s for s in spans.get_finished_spans() if s.name == "execute_tool boom")
        assert boom.status.status_code is StatusCode.ERROR
        assert boom.attributes is not None
        assert boom.attributes["outcome"] == "error"

    async def test_log_lines_carry_the_trace_and_span_ids(
        self, sim: Simulator, spans: InMemorySpanExporter, logs: list[dict[str, Any]]
    ) -> None:
        """A handler's own line names its call's span; "round submitted" the submission's."""
        await run_traced(sim, TWO_ROUNDS)
        finished = spans.get_finished_spans()

        def ids(name: str) -> set[tuple[str, str]]:
            return {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x"))
                    for s in finished if s.name == name}

        submitted = {(e["trace_id"], e["span_id"]) for e in logs
                     if e["event"] == "round submitted"}
        assert submitted == ids("submit_tool_outputs")
        assert len(submitted) == 2
        handler = {(e["trace_id"], e["span_id"]) for e in logs
                   if e["event"] == "looking the order up"}
        assert handler == ids("execute_tool lookup_order")


class TestOff:
    def test_tracing_off_is_the_shared_no_op(self) -> None:
        """Without [tracing] enabled, rounds get the no-op, whatever is installed."""
        assert open_tracing(TracingSettings()) is NO_TRACING

    def test_a_round_run_without_opentelemetry_imports_none_of_it(self) -> None:
        """With opentelemetry unimportable, `import worker` and a whole run never touch it."""
        script = textwrap.dedent("""
            import sys
            class Block:
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] == "opentelemetry":
                        raise ImportError("blocked: " + name)
            sys.meta_path.insert(0, Block())
            import anyio, worker
            from worker.demo import run_demo
            assert anyio.run(lambda: run_demo(runs=2, seed=1, port=0))
            loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
            assert not loaded, loaded
            from worker.config.settings import TracingSettings
            from worker.errors import ConfigError
            from worker.observability.tracing import open_tracing
            try:
                open_tracing(TracingSettings(enabled=True))
            except ConfigError as exc:
                print("refused:", exc)
        """)
        result = subprocess.run(  # noqa: S603 - our own script, run by this interpreter
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
            timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "refused: tracing.enabled: tracing needs the [otel] extra" in result.stdout

    def test_attempts_count_each_call_id_in_bounded_memory(self) -> None:
        """A call started again in this process is attempt 2; old ids are forgotten."""
        attempts = Attempts(kept=2)
        assert [attempts.next(i) for i in ("a", "a", "b", "c", "a")] == [1, 2, 1, 1, 1]


def test_enabled_tracing_uses_the_global_provider_an_application_set(
    spans: InMemorySpanExporter,
) -> None:
    """An application's own TracerProvider is kept (and not shut down with the worker)."""
    tracing = open_tracing(TracingSettings(enabled=True))
    assert isinstance(tracing, OtelTracing)
    assert tracing.tracer is not None
    assert not tracing._owned

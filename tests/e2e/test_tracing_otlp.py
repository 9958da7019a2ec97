"""Traces over OTLP/HTTP: `tool-worker run` with [tracing] on, to a receiver that decodes them."""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import ServedApp
from tests.e2e.conftest import calls, start_runs
from tests.e2e.process import ROOT, environment, write_config

if TYPE_CHECKING:
    from pathlib import Path

    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from worker.simulator import Simulator

pytestmark = pytest.mark.e2e


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf in, spans kept."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.resources: list[dict[str, Any]] = []
        self.content_types: set[str] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        return app

    async def _export(self, request: web.Request) -> web.Response:
        self.content_types.add(request.content_type)
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            self.resources.append(attributes(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")


def attributes(pairs: Any) -> dict[str, Any]:
    def value(pair: KeyValue) -> Any:
        kind = pair.value.WhichOneof("value")
        return getattr(pair.value, kind) if kind else None

    return {pair.key: value(pair) for pair in pairs}


async def test_a_two_round_run_reaches_an_otlp_receiver_as_two_traces(
    sim: Simulator, tmp_path: Path
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME are honoured; the traces decode to
    round → poll|stream, claim, execute_tool per call, submit_tool_outputs; logs name them."""
    script = [calls(("add", {"a": 1}), ("echo", {"text": "hi"})), calls(("add", {"a": 2}))]
    threads, runs = start_runs(sim, [script])
    config = write_config(tmp_path / "worker.toml", sim, threads, tracing={"enabled": True})
    receiver = Receiver()
    async with ServedApp(receiver.app()) as served:
        env = environment(OTEL_EXPORTER_OTLP_ENDPOINT=served.url, OTEL_SERVICE_NAME="tw-test")
        with anyio.fail_after(60):
            result = await anyio.run_process(
                [sys.executable, "-m", "worker", "run", "--config", str(config), "--once"],
                env=env, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert receiver.content_types == {"application/x-protobuf"}
    assert {r["service.name"] for r in receiver.resources} == {"tw-test"}

    by_trace: dict[bytes, list[Span]] = defaultdict(list)
    for span in receiver.spans:
        by_trace[span.trace_id].append(span)
    assert len(by_trace) == 2
    shapes = {}
    for trace_id, spans in by_trace.items():
        (root,) = [s for s in spans if not s.parent_span_id]
        root_attributes = attributes(root.attributes)
        assert (root.name, root_attributes["run_id"], root_attributes["outcome"]) == (
            "round", runs[0], "ok")
        assert all(s.parent_span_id == root.span_id for s in spans if s is not root)
        shapes[root_attributes["found_by"]] = sorted(s.name for s in spans if s is not root)
        for span in spans:
            if span.name.startswith("execute_tool"):
                call = attributes(span.attributes)
                assert call["tool_call_id"].startswith("call_")
                assert (call["outcome"], call["attempt"]) == ("ok", 1)
                assert "arguments" not in call
        assert trace_id.hex() in result.stderr.decode()  # the log lines name the trace
    assert shapes == {
        "poll": ["claim", "execute_tool add", "execute_tool echo", "poll", "submit_tool_outputs"],
        "stream": ["claim", "execute_tool add", "stream", "submit_tool_outputs"],
    }

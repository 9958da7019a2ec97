"""OpenTelemetry's side of tracing; imported only when ``[tracing] enabled = true``."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Status, StatusCode

from worker.observability.tracing import (
    Attempts,
    CallSpan,
    RoundSpan,
    Tracing,
    bound_ids,
    epoch_ns,
    is_settled,
    round_attributes,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from opentelemetry.trace import Span, SpanContext

    from worker.models import Round, ToolCall

__all__ = ["OtelTracing", "tracer_provider"]

_SCOPE = "tool-worker"
# Runs whose last submission is remembered, so the stream event of the next round links to it.
_RUNS_KEPT = 10_000


def tracer_provider(service_name: str) -> tuple[trace.TracerProvider, bool]:
    """The global provider when the application set one; else ours, exporting over OTLP/HTTP.

    Returns the provider and whether it is ours (ours is shut down with the worker). The
    exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers,
    timeout, compression); ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` apply too.
    """
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current, False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Explicit attributes would win over OTEL_SERVICE_NAME; the variable is the operator's word.
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Global, so that handlers' instrumented libraries (aiohttp-client, httpx, asyncpg...)
    # record into the same provider and join the call's trace.
    trace.set_tracer_provider(provider)
    return provider, True


class _CallSpan(CallSpan):
    def __init__(self, span: Span, is_ok: Callable[[str], bool] = "ok".__eq__) -> None:
        self._span = span
        self._is_ok = is_ok

    def outcome(self, outcome: str) -> None:
        self._span.set_attribute("outcome", outcome)
        if not self._is_ok(outcome):
            self._span.set_status(Status(StatusCode.ERROR, outcome))


class _RoundSpan(RoundSpan):
    def __init__(self, owner: OtelTracing, span: Span, started_ns: int) -> None:
        self._owner = owner
        self._span = span
        self._mark_ns = started_ns

    def claimed(self, held: bool) -> None:
        now_ns = epoch_ns(anyio.current_time())
        claim = self._owner.tracer.start_span("claim", start_time=self._mark_ns,
                                              attributes={"claimed": held})
        claim.end(end_time=now_ns)
        self._mark_ns = now_ns

    def outcome(self, outcome: str) -> None:
        self._span.set_attribute("outcome", outcome)
        if not is_settled(outcome):
            self._span.set_status(Status(StatusCode.ERROR, outcome))


class OtelTracing(Tracing):
    """Spans for rounds and calls, recorded into an OpenTelemetry ``TracerProvider``."""

    enabled = True

    def __init__(self, provider: trace.TracerProvider, *, owned: bool = False,
                 log_arguments: bool = False) -> None:
        """``owned``: shut ``provider`` down with the worker (not one the application set)."""
        self._provider = provider
        self._owned = owned
        self._log_arguments = log_arguments
        self.tracer = provider.get_tracer(_SCOPE)
        self._attempts = Attempts()
        self._submissions: dict[str, SpanContext] = {}

    @contextmanager
    def span(self, name: str, **options: object) -> Iterator[Span]:
        """A current span whose ids are bound to the log context while it is open."""
        with self.tracer.start_as_current_span(name, **options) as span:  # type: ignore[arg-type]
            ids = span.get_span_context()
            with bound_ids(ids.trace_id, ids.span_id):
                yield span

    def remember_submission(self, run_id: str, context: SpanContext) -> None:
        self._submissions[run_id] = context
        if len(self._submissions) > _RUNS_KEPT:
            del self._submissions[next(iter(self._submissions))]

    @contextmanager
    def round(self, round_: Round, *, found_by: str) -> Iterator[RoundSpan]:
        found_ns = epoch_ns(round_.detected_at)
        previous = self._submissions.pop(round_.run_id, None)
        links = [Link(previous)] if previous is not None and found_by == "stream" else []
        # A new trace per round, whatever span (an application's, a test's) is current.
        with self.span("round", context=otel_context.Context(), start_time=found_ns,
                       attributes=round_attributes(round_, found_by)) as span:
            now_ns = epoch_ns(anyio.current_time())
            self.tracer.start_span(found_by, start_time=found_ns, links=links).end(now_ns)
            yield _RoundSpan(self, span, now_ns)

    @contextmanager
    def call(self, call: ToolCall) -> Iterator[CallSpan]:
        attributes: dict[str, str | int] = {
            "tool_call_id": call.id,
            "tool": call.name,
            "attempt": self._attempts.next(call.id),
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
        }
        if self._log_arguments:
            attributes["arguments"] = call.arguments
        with self.span(f"execute_tool {call.name}", attributes=attributes) as span:
            yield _CallSpan(span)

    @contextmanager
    def submit(self, round_: Round) -> Iterator[CallSpan]:
        with self.span("submit_tool_outputs",
                       attributes={"tool_calls": len(round_.tool_calls)}) as span:
            self.remember_submission(round_.run_id, span.get_span_context())
            yield _CallSpan(span, is_settled)

    async def aclose(self) -> None:
        # Both block (the exporter sends over HTTP): in a thread, off the event loop.
        flush = getattr(self._provider, "force_flush", None)
        if flush is not None:
            await anyio.to_thread.run_sync(flush)
        shutdown = getattr(self._provider, "shutdown", None)
        if self._owned and shutdown is not None:
            await anyio.to_thread.run_sync(shutdown)

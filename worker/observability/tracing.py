"""Tracing: each round as an OpenTelemetry trace, when the ``[otel]`` extra is installed and on.

A round's trace, top to bottom::

    round                          thread_id, run_id, assistant_id, found_by, outcome
    ├── poll | stream              from the answer that showed the round to its claim
    ├── claim                      claimed = true | false
    ├── execute_tool <name>        one per call: tool_call_id, tool, outcome, attempt
    │   └── (the handler's own spans: instrumented HTTP or database calls join here)
    └── submit_tool_outputs        outcome

Without tracing, ``Tracing`` is a set of no-ops: nothing of ``opentelemetry`` is imported, and
a round pays a few attribute lookups. With it, ``trace_id`` and ``span_id`` are bound to the
structlog context as each span opens, so every log line names its span.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Self

import anyio
from structlog.contextvars import bound_contextvars

from worker.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from worker.config.settings import TracingSettings
    from worker.models import Round, ToolCall

__all__ = ["NO_TRACING", "CallSpan", "RoundSpan", "Tracing", "open_tracing"]

# Rounds settled without error: their trace's status stays unset (OK).
_SETTLED = frozenset({"ok", "already_submitted", "cancelled"})
# Calls of this process remembered for their attempt count; older ones count from 1 again.
_ATTEMPTS_KEPT = 10_000
_INSTALL_HINT = "tracing needs the [otel] extra: pip install 'tool-worker[otel]'"


class CallSpan:
    """A call's or a submission's span; the no-op one is shared when tracing is off."""

    def outcome(self, outcome: str) -> None:
        """Record how it ended (a ``CallOutcome`` or ``SubmitOutcome`` value)."""


class RoundSpan:
    """A round's trace; the no-op one is shared by every round when tracing is off."""

    def claimed(self, held: bool) -> None:
        """The claim was decided: ``held`` when this worker has the round."""

    def outcome(self, outcome: str) -> None:
        """Record what became of the round (a ``SubmitOutcome`` value)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _NoCall(CallSpan):
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NO_CALL = _NoCall()
_NO_ROUND = RoundSpan()


class Tracing:
    """Opens a round's spans; this base class is the no-op used when tracing is off."""

    enabled = False

    def round(self, round_: Round, *, found_by: str) -> AbstractContextManager[RoundSpan]:
        """The round's trace, current while the round is taken (found ``by`` poll or stream)."""
        return _NO_ROUND

    def call(self, call: ToolCall) -> AbstractContextManager[CallSpan]:
        """A call's span, current while its handler runs (a child of the round's)."""
        return _NO_CALL

    def submit(self, round_: Round) -> AbstractContextManager[CallSpan]:
        """The submission's span (a child of the round's); ``outcome`` is set once known."""
        return _NO_CALL

    async def aclose(self) -> None:
        """Send the spans not yet exported, and stop the exporter if it is ours."""


NO_TRACING = Tracing()


def open_tracing(settings: TracingSettings, *, log_arguments: bool = False) -> Tracing:
    """The no-op ``Tracing`` unless ``settings.enabled``; then OpenTelemetry's.

    Raises:
        ConfigError: tracing is on but the ``[otel]`` extra is not installed.
    """
    if not settings.enabled:
        return NO_TRACING
    try:
        from worker.observability.otel import OtelTracing, tracer_provider
    except ImportError as exc:
        raise ConfigError(_INSTALL_HINT, key="tracing.enabled") from exc
    provider, owned = tracer_provider(settings.service_name)
    return OtelTracing(provider, owned=owned, log_arguments=log_arguments)


def epoch_ns(anyio_time: float) -> int:
    """A time on the anyio clock as OpenTelemetry wants it: nanoseconds since the epoch."""
    return time.time_ns() - round((anyio.current_time() - anyio_time) * 1e9)


class Attempts:
    """How many times this process has started each tool call (bounded memory)."""

    def __init__(self, kept: int = _ATTEMPTS_KEPT) -> None:
        self._kept = kept
        self._seen: OrderedDict[str, int] = OrderedDict()

    def next(self, tool_call_id: str) -> int:
        count = self._seen.pop(tool_call_id, 0) + 1
        self._seen[tool_call_id] = count
        while len(self._seen) > self._kept:
            self._seen.popitem(last=False)
        return count


@contextmanager
def bound_ids(trace_id: int, span_id: int) -> Iterator[None]:
    """Log lines inside carry the span's ids, formatted as every tracing backend shows them."""
    with bound_contextvars(trace_id=format(trace_id, "032x"), span_id=format(span_id, "016x")):
        yield


def round_attributes(round_: Round, found_by: str) -> dict[str, Any]:
    """The attributes of a round's span: its ids, never its arguments."""
    return {
        "thread_id": round_.thread_id,
        "run_id": round_.run_id,
        "assistant_id": round_.assistant_id,
        "found_by": found_by,
        "tool_calls": len(round_.tool_calls),
    }


def is_settled(outcome: str) -> bool:
    """A round outcome that is no error of the round (ok, already submitted, cancelled)."""
    return outcome in _SETTLED

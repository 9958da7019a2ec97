"""Dispatcher: every call of a Round at once; every failure becomes an output string."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_process
import pydantic_core
import structlog
from structlog.contextvars import bound_contextvars

from worker.errors import ToolArgumentsError, ToolError, ToolNotFound
from worker.handlers.context import ToolContext
from worker.models import CallOutcome, Round, ToolCall, ToolOutput
from worker.observability.logs import redact_text
from worker.observability.tracing import NO_TRACING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import ToolsSettings
    from worker.handlers.registry import Registry, Tool
    from worker.observability.metrics import Metrics
    from worker.observability.tracing import Tracing

__all__ = ["Dispatcher", "round_deadline"]

# Seconds kept before expires_at for the submission itself, when a handler runs into the
# margin because its own timeout still fits.
SUBMIT_RESERVE_S = 1.5

TRUNCATION_MARKER = "\n[output truncated by tool-worker: {dropped} of {total} characters removed]"

log = structlog.get_logger("worker.rounds.dispatch")

# Every tool name the registry does not know counts under this one label.
UNKNOWN_LABEL = "(unknown)"
NAMES_SHOWN = 5
MAX_NAME_SHOWN = 66


def round_deadline(round_: Round, settings: ToolsSettings) -> float:
    """The anyio-clock time by which the round's outputs must be ready to submit.

    ``expires_at`` is epoch seconds on the API's clock; the margin leaves time to submit.
    """
    expiry = round_.expiry
    if expiry is None:
        return anyio.current_time() + settings.default_timeout_s + settings.deadline_margin_s
    return expiry - settings.deadline_margin_s


class Dispatcher:
    """Runs every tool call of a round concurrently and returns one output per call, in order."""

    def __init__(
        self,
        registry: Registry,
        settings: ToolsSettings,
        metrics: Metrics,
        *,
        log_arguments: bool = False,
        tool_log: FilteringBoundLogger | None = None,
        resources: Mapping[type[Any], object] | None = None,
        thread_metadata: Callable[[str], Awaitable[Mapping[str, str]]] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """``tool_log`` is the ``ctx.log`` handlers get; a fresh logger per call by default.

        ``resources`` holds the started ``@resource`` values by type; ``thread_metadata``
        reads a thread's metadata for ``ctx.thread_metadata()``.
        """
        self._tracing = tracing or NO_TRACING
        self._registry = registry
        self._resources = resources or {}
        self._thread_metadata = thread_metadata or _no_thread_metadata
        self._tool_log = tool_log
        self._log_arguments = log_arguments
        self._settings = settings
        self._metrics = metrics
        # Sync handlers share one pool of threads, so a burst of rounds cannot spawn thousands.
        self._threads = anyio.CapacityLimiter(settings.max_threads)
        self._names = frozenset(spec.name for spec in registry)
        self._children: dict[tuple[str, CallOutcome], tuple[Any, Any]] = {}
        self._per_tool = {spec.name: anyio.CapacityLimiter(spec.max_concurrency)
                          for spec in registry if spec.max_concurrency is not None}
        self._output_limits = {spec.name: spec.max_output_chars
                               for spec in registry if spec.max_output_chars is not None}
        for spec in registry:
            if not spec.is_async and not spec.process:  # the tools that can leave a thread
                metrics.abandoned_threads.labels(spec.name)  # a series at 0, for increase()

    async def run(self, round_: Round, deadline: float | None = None) -> list[ToolOutput]:
        """Answer every call of the round; never raises for a handler's or the model's fault."""
        if deadline is None:
            deadline = round_deadline(round_, self._settings)
        limit = self._settings.max_calls_per_round
        # One output per call id: a repeated id is answered once, by its first call, so each
        # handler run has its own ctx.tool_call_id (an idempotency key) and the API gets no
        # two outputs for one id.
        calls = _first_per_id(round_.tool_calls)
        outputs: list[ToolOutput | None] = [None] * len(calls)

        async def answer(index: int, call: ToolCall) -> None:
            outputs[index] = await self._answer(round_, call, deadline)

        if len(calls) == 1:  # nothing to run beside it: spare the task group
            outputs[0] = await self._answer(round_, calls[0], deadline)
        else:
            async with anyio.create_task_group() as tg:
                for index, call in enumerate(calls[:limit]):
                    tg.start_soon(answer, index, call)
        for index, call in enumerate(calls[limit:], start=limit):
            outputs[index] = self._refuse_excess(call, len(calls))
        answered = [output for output in outputs if output is not None]
        self._log_round(round_, answered)
        return answered

    def _log_round(self, round_: Round, outputs: list[ToolOutput]) -> None:
        """One line per round for its unknown tools and one for its excess calls, not one per
        call: a round of a thousand made-up names must not write a thousand lines."""
        unknown = [o.tool for o in outputs if o.outcome is CallOutcome.UNKNOWN_TOOL]
        if unknown:
            names = sorted({repr(name)[:MAX_NAME_SHOWN] for name in unknown})
            log.warning("model called an unknown tool", calls=len(unknown),
                        tools=names[:NAMES_SHOWN], distinct=len(names),
                        available=sorted(self._names)[:NAMES_SHOWN])
        limit = self._settings.max_calls_per_round
        if len(outputs) > limit:
            log.warning("round has too many tool calls; the excess answered with an error",
                        tool_calls=len(outputs), limit=limit)
        if len(outputs) < len(round_.tool_calls):
            log.warning("round repeats tool call ids; each id is answered once, by its first call",
                        tool_calls=len(round_.tool_calls), distinct_ids=len(outputs))

    def _observe(self, tool: str, outcome: CallOutcome, duration_s: float) -> None:
        # Labelled children are looked up once per (label, outcome): .labels() is not free.
        # Keyed by the label, not the name: names from the API are unbounded, labels are not.
        unknown = outcome is CallOutcome.UNKNOWN_TOOL or tool not in self._names
        label = UNKNOWN_LABEL if unknown else tool
        key = (label, outcome)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._metrics.tool_calls.labels(label, outcome.value),
                None if unknown else self._metrics.tool_call_duration.labels(label),
            )
        counter, histogram = children
        counter.inc()
        if histogram is not None:
            histogram.observe(duration_s)

    def _refuse_excess(self, call: ToolCall, count: int) -> ToolOutput:
        limit = self._settings.max_calls_per_round
        self._metrics.tool_calls.labels(call.name if call.name in self._names else UNKNOWN_LABEL,
                                        CallOutcome.ERROR.value).inc()
        text = (f"Error: this round asked for {count} tool calls; only the first {limit} were "
                "run. Call fewer tools at once.")
        return ToolOutput(call.id, text, call.name, CallOutcome.ERROR, 0.0)

    async def _answer(self, round_: Round, call: ToolCall, deadline: float) -> ToolOutput:
        started = anyio.current_time()
        # The call's span is current while the handler runs: its own spans join the trace.
        with bound_contextvars(tool_call_id=call.id, tool=call.name), \
                self._tracing.call(call) as traced:
            self._metrics.in_flight_calls.inc()
            try:
                text, outcome = await self._execute(round_, call, deadline)
            finally:
                self._metrics.in_flight_calls.dec()
            traced.outcome(outcome.value)
            duration_s = anyio.current_time() - started
            text = self._truncate(
                text, self._output_limits.get(call.name, self._settings.max_output_chars)
            )
            self._observe(call.name, outcome, duration_s)
            if self._log_arguments:
                log.info("tool call answered", outcome=outcome.value,
                         duration_s=round(duration_s, 4), arguments=call.arguments, output=text)
            else:
                log.debug("tool call answered", outcome=outcome.value,
                          duration_s=round(duration_s, 4))
        return ToolOutput(call.id, text, call.name, outcome, duration_s)

    async def _execute(
        self, round_: Round, call: ToolCall, deadline: float
    ) -> tuple[str, CallOutcome]:
        try:
            spec = self._registry.get(call.name)
        except ToolNotFound as exc:  # logged once for the round, by _log_round
            return f"Error: {exc}.", CallOutcome.UNKNOWN_TOOL
        try:
            kwargs = self._parse(spec, call)
        except ToolArgumentsError as exc:
            log.warning("model sent invalid arguments", problem=exc.problem)
            return (f"Error: {exc}. Call the tool again with corrected arguments.",
                    CallOutcome.INVALID_ARGUMENTS)
        timeout_s = self._time_for(spec, deadline, round_.expiry)
        if timeout_s is None:
            left_s = max((round_.expiry or deadline) - anyio.current_time(), 0.0)
            log.warning("too little time left before the run expires; not running the tool",
                        expires_in_s=round(left_s, 1))
            text = f"Error: the run expires in {left_s:.0f} s; the tool {spec.name!r} was not run."
            return text, CallOutcome.NOT_RUN
        self._inject(spec, kwargs, round_, call, timeout_s)
        return await self._run_handler(spec, kwargs, timeout_s)

    def _inject(self, spec: Tool, kwargs: dict[str, Any], round_: Round, call: ToolCall,
                timeout_s: float) -> None:
        """The ToolContext and the resources the handler asks for, by annotation."""
        for param, kind in spec.signature.resources:
            kwargs[param] = self._resources[kind]
        if spec.signature.context_param is not None:
            kwargs[spec.signature.context_param] = ToolContext(
                thread_id=round_.thread_id,
                run_id=round_.run_id,
                tool_call_id=call.id,
                assistant_id=round_.assistant_id,
                deadline=anyio.current_time() + timeout_s,
                log=self._tool_log or structlog.get_logger("tool").bind(),
                metadata=round_.metadata,
                load_thread_metadata=functools.partial(self._thread_metadata, round_.thread_id),
            )

    def _parse(self, spec: Tool, call: ToolCall) -> dict[str, Any]:
        """The handler's arguments from the model's JSON; raises ``ToolArgumentsError``."""
        if len(call.arguments) > self._settings.max_arguments_chars:
            raise ToolArgumentsError(
                spec.name,
                f"{len(call.arguments)} characters is more than the limit of "
                f"{self._settings.max_arguments_chars}",
            )
        return spec.signature.parse(call.arguments)

    def _time_for(self, spec: Tool, deadline: float, expiry: float | None) -> float | None:
        """The handler's timeout, or None when there is no time to run it at all."""
        now = anyio.current_time()
        wanted_s = spec.timeout_s or self._settings.default_timeout_s
        timeout_s = min(wanted_s, deadline - now)
        # The margin before expiry is kept for the submission; a handler whose own timeout
        # still fits before the run expires may use it, rather than not run at all.
        if expiry is not None and timeout_s < wanted_s <= expiry - SUBMIT_RESERVE_S - now:
            timeout_s = wanted_s
        return timeout_s if timeout_s > 0 else None

    async def _run_handler(
        self, spec: Tool, kwargs: dict[str, Any], timeout_s: float
    ) -> tuple[str, CallOutcome]:
        with anyio.move_on_after(timeout_s) as scope:
            try:
                result = await self._invoke(spec, kwargs)
            except ToolError as exc:
                return str(exc), CallOutcome.ERROR
            except Exception as exc:
                log.warning("tool handler raised", exc_info=exc)
                if not spec.expose_errors:
                    return (f"Error: the tool {spec.name!r} failed; the error was logged.",
                            CallOutcome.ERROR)
                # Redacted before the cut, so no half of a key survives it; the model's
                # output is a log of its own (stored with the run), so it gets the same care.
                text = f"Error: the tool {spec.name!r} failed: {type(exc).__name__}: {exc}"
                return redact_text(text)[:500], CallOutcome.ERROR
        if scope.cancelled_caught:
            log.warning("tool call timed out", timeout_s=round(timeout_s, 3))
            if not spec.is_async and not spec.process:
                # The thread cannot be interrupted; it finishes in the background, unawaited.
                self._metrics.abandoned_threads.labels(spec.name).inc()
            return (f"Error: the tool {spec.name!r} timed out after {timeout_s:.1f} s.",
                    CallOutcome.TIMEOUT)
        return _encode(spec.name, result)

    async def _invoke(self, spec: Tool, kwargs: dict[str, Any]) -> Any:
        limiter = self._per_tool.get(spec.name)
        if limiter is None:
            return await self._call(spec, kwargs)
        async with limiter:
            return await self._call(spec, kwargs)

    async def _call(self, spec: Tool, kwargs: dict[str, Any]) -> Any:
        if spec.is_async:
            return await spec.fn(**kwargs)
        if spec.process:
            # cancellable: on timeout the worker process is killed, so the work really stops.
            return await anyio.to_process.run_sync(
                functools.partial(spec.fn, **kwargs), cancellable=True
            )
        # abandon_on_cancel: a sync handler that overruns its timeout cannot be interrupted;
        # the round goes on without it and the thread finishes in the background.
        return await anyio.to_thread.run_sync(
            functools.partial(spec.fn, **kwargs), limiter=self._threads, abandon_on_cancel=True
        )

    @staticmethod
    def _truncate(text: str, limit: int) -> str:
        if len(text) <= limit:
            return text
        # The marker's own length depends on the count, so size it with the upper bound first.
        kept = limit - len(TRUNCATION_MARKER.format(dropped=len(text), total=len(text)))
        return text[:kept] + TRUNCATION_MARKER.format(dropped=len(text) - kept, total=len(text))


def _first_per_id(calls: Sequence[ToolCall]) -> list[ToolCall]:
    """The calls in order, each id's first only."""
    first: dict[str, ToolCall] = {}
    for call in calls:
        first.setdefault(call.id, call)
    return list(first.values())


async def _no_thread_metadata(thread_id: str) -> Mapping[str, str]:
    return {}


def _encode(tool: str, result: Any) -> tuple[str, CallOutcome]:
    if isinstance(result, str):
        return result, CallOutcome.OK
    try:
        # NaN and Infinity are not JSON; the model gets null, as JSON.stringify would give.
        return pydantic_core.to_json(result, inf_nan_mode="null").decode(), CallOutcome.OK
    except pydantic_core.PydanticSerializationError:
        log.warning("tool returned a value that is not JSON-encodable", type=type(result).__name__)
        return (
            (f"Error: the tool {tool!r} returned a {type(result).__name__}, "
            "which cannot be encoded as JSON."),
            CallOutcome.ERROR,
        )

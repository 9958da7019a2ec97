"""Helpers for handler authors: call a tool as the worker would, or run the worker end to end."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import import_module
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

import anyio
import structlog
import structlog.testing
from structlog.contextvars import merge_contextvars

from worker.config.secret import Secret
from worker.config.settings import (
    ApiSettings,
    ServerSettings,
    Settings,
    ToolsSettings,
    WatchSettings,
)
from worker.daemon import Worker
from worker.handlers.context import ToolContext
from worker.handlers.registry import Registry, tool_spec
from worker.handlers.resources import open_resources
from worker.models import Round, ToolCall, ToolOutput
from worker.observability.metrics import Metrics
from worker.rounds.dispatch import Dispatcher
from worker.simulator import Simulator, ToolCallScript

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence

    from structlog.typing import FilteringBoundLogger

__all__ = [
    "CallResult",
    "RunResult",
    "ToolWorker",
    "call_tool",
    "capture_logs",
    "fake_context",
    "run_tools",
]

_KEY = "sk-tool-worker-testing"


@contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Collect log events as dicts, with the bound ids (thread_id, run_id, tool_call_id)."""
    with structlog.testing.capture_logs(processors=[merge_contextvars]) as logs:
        yield logs


def fake_context(
    *,
    thread_id: str = "thread_test",
    run_id: str = "run_test",
    tool_call_id: str = "call_test",
    assistant_id: str = "asst_test",
    timeout_s: float = 60.0,
    log: FilteringBoundLogger | None = None,
    metadata: Mapping[str, str] | None = None,
    thread_metadata: Mapping[str, str] | None = None,
) -> ToolContext:
    """A ToolContext for calling a handler directly in a test.

    ``metadata`` is the run's metadata (``ctx.metadata``); ``thread_metadata`` is what
    ``await ctx.thread_metadata()`` returns.
    """
    thread_meta = MappingProxyType(dict(thread_metadata or {}))

    async def load_thread_metadata() -> Mapping[str, str]:
        return thread_meta

    return ToolContext(
        thread_id=thread_id,
        run_id=run_id,
        tool_call_id=tool_call_id,
        assistant_id=assistant_id,
        deadline=anyio.current_time() + timeout_s,
        log=log or structlog.get_logger("tool").bind(),
        metadata=MappingProxyType(dict(metadata or {})),
        load_thread_metadata=load_thread_metadata,
    )


def _round_of_one(ctx: ToolContext, call: ToolCall) -> Round:
    """The round a single call makes, with the context's ids and metadata."""
    return Round(thread_id=ctx.thread_id, run_id=ctx.run_id, assistant_id=ctx.assistant_id,
                 expires_at=None, tool_calls=(call,), detected_at=anyio.current_time(),
                 metadata=ctx.metadata)


async def call_tool(
    fn: Callable[..., Any],
    arguments: str | dict[str, Any] = "{}",
    *,
    ctx: ToolContext | None = None,
    settings: ToolsSettings | None = None,
    resources: Mapping[type[Any], object] | None = None,
) -> ToolOutput:
    """Run one call of a ``@tool`` handler through the worker's real validation and error path.

    ``arguments`` is the model's raw JSON text (a dict is encoded for you). The handler gets
    ``ctx`` (its ids, metadata, deadline and ``log``) when it asks for a ToolContext.
    ``resources`` replace the ``@resource`` of their type (``{Database: fake_db}``); a
    resource the handler takes that is not replaced is started for the call and closed after
    it. The returned ``ToolOutput`` holds the exact ``output`` string the model would see and
    the ``outcome``.
    """
    spec = tool_spec(fn)
    if spec is None:
        raise TypeError(f"{fn!r} is not decorated with @tool")
    ctx = ctx or fake_context()
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    round_ = _round_of_one(ctx, ToolCall(ctx.tool_call_id, spec.name, raw))
    registry = Registry([spec])
    load_thread_metadata = ctx.load_thread_metadata

    async def thread_metadata(thread_id: str) -> Mapping[str, str]:
        return await load_thread_metadata()

    async with open_resources(registry.resource_types(), resources) as started:
        dispatcher = Dispatcher(registry, settings or ToolsSettings(), Metrics(),
                                tool_log=ctx.log, resources=started,
                                thread_metadata=thread_metadata)
        (output,) = await dispatcher.run(round_, deadline=ctx.deadline)
    return output


@dataclass(frozen=True, slots=True)
class CallResult:
    """One tool call of a scripted round and the output the worker submitted for it."""

    name: str
    arguments: str
    tool_call_id: str
    output: str


@dataclass(frozen=True, slots=True)
class RunResult:
    """What the worker did with a scripted run: its final status and each round's outputs."""

    run_id: str
    status: str  # "completed" when every round was answered
    rounds: tuple[tuple[CallResult, ...], ...]

    @property
    def outputs(self) -> list[list[str]]:
        """The submitted output strings, per round, in the order of the calls."""
        return [[call.output for call in round_] for round_ in self.rounds]


class ToolWorker:
    """The real worker with your handlers, against the built-in simulator of the API.

    Each ``run`` starts a simulator on loopback, creates an assistant with the handlers'
    ``tools`` and a run whose model makes the scripted rounds of calls, runs the worker until
    the run ends, and returns what was submitted. Nothing is shared between runs.

    Args:
        handlers: ``@tool`` functions, modules, or module names (as in ``[tools] modules``).
        tools: the ``[tools]`` settings (timeouts, limits); the defaults otherwise.
        timeout_s: a run that takes longer fails the test with ``TimeoutError``.
        resources: values that replace the ``@resource`` of their type; the handlers'
            other resources are started with the worker and closed after it.
    """

    def __init__(
        self,
        handlers: Iterable[Callable[..., Any] | str | ModuleType],
        *,
        tools: ToolsSettings | None = None,
        timeout_s: float = 30.0,
        resources: Mapping[type[Any], object] | None = None,
    ) -> None:
        self.registry = _registry(handlers)
        self.tools = tools or ToolsSettings()
        self.timeout_s = timeout_s
        self.resources = dict(resources or {})

    async def run(
        self,
        rounds: Sequence[Sequence[tuple[str, str | dict[str, Any]]]],
        *,
        metadata: Mapping[str, str] | None = None,
        thread_metadata: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Answer a run whose model calls ``rounds``: ``[[("name", {"arg": 1}), ...], ...]``.

        Arguments given as a dict are JSON-encoded; a string is sent as it is, even if it is
        not valid JSON, as a model may send it. ``metadata`` and ``thread_metadata`` are set
        on the run and its thread, as the application would (``ctx.metadata``,
        ``await ctx.thread_metadata()``).
        """
        script = [[ToolCallScript(name, args if isinstance(args, str) else json.dumps(args))
                   for name, args in round_] for round_ in rounds]
        async with Simulator(api_key=_KEY) as sim:
            assistant_id = sim.create_assistant(
                "tool-worker test", [spec.to_openai() for spec in self.registry])
            thread_id = sim.create_thread(metadata=thread_metadata)
            run_id = sim.create_run(thread_id, assistant_id, rounds=script, metadata=metadata)
            worker = Worker(self._settings(sim.base_url, thread_id), self.registry,
                            resources=self.resources)
            with anyio.fail_after(self.timeout_s):
                await worker.run(until_idle=True)
            return _result(sim, run_id, script)

    def _settings(self, base_url: str, thread_id: str) -> Settings:
        return Settings(
            api=ApiSettings(base_url=base_url),
            watch=WatchSettings(threads=(thread_id,), active_poll_interval_s=0.01,
                                idle_poll_interval_s=0.05, store="memory"),
            tools=self.tools,
            server=ServerSettings(enabled=False),
            api_key=Secret(_KEY),
        )


async def run_tools(
    handlers: Iterable[Callable[..., Any] | str | ModuleType],
    rounds: Sequence[Sequence[tuple[str, str | dict[str, Any]]]],
    *,
    tools: ToolsSettings | None = None,
    timeout_s: float = 30.0,
    resources: Mapping[type[Any], object] | None = None,
    metadata: Mapping[str, str] | None = None,
    thread_metadata: Mapping[str, str] | None = None,
) -> RunResult:
    """Run the worker with ``handlers`` against the simulator for one scripted run.

    ``await run_tools([get_weather], [[("get_weather", {"city": "Oslo"})]])`` returns a
    ``RunResult`` whose ``outputs`` are the strings the model received, per round. The
    keywords are those of ``ToolWorker`` and ``ToolWorker.run``.
    """
    worker = ToolWorker(handlers, tools=tools, timeout_s=timeout_s, resources=resources)
    return await worker.run(rounds, metadata=metadata, thread_metadata=thread_metadata)


def _registry(handlers: Iterable[Callable[..., Any] | str | ModuleType]) -> Registry:
    registry = Registry()
    for item in handlers:
        if isinstance(item, str | ModuleType):
            registry.add_module(import_module(item) if isinstance(item, str) else item)
            continue
        spec = tool_spec(item)
        if spec is None:
            raise TypeError(f"{item!r} is not decorated with @tool, nor a module")
        registry.add(spec)
    if not len(registry):
        raise ValueError("no tools: pass @tool functions, modules or module names")
    return registry


def _result(sim: Simulator, run_id: str, script: list[list[ToolCallScript]]) -> RunResult:
    submitted = {s.round_index: s.tool_outputs for s in sim.accepted_submissions(run_id)}
    rounds = []
    for index, calls in enumerate(script):
        if index not in submitted:
            break  # the run ended (expired, say) before this round was answered
        rounds.append(tuple(
            CallResult(call.name, call.arguments, call_id, output)
            for call, (call_id, output) in zip(calls, submitted[index], strict=True)
        ))
    return RunResult(run_id, str(sim.run(run_id)["status"]), tuple(rounds))

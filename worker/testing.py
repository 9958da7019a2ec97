"""Helpers for handler authors: call a tool exactly as the worker would, in a test."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import structlog
import structlog.testing
from structlog.contextvars import merge_contextvars

from .config import ToolsSettings
from .context import ToolContext
from .dispatch import Dispatcher
from .metrics import Metrics
from .models import Round, ToolCall, ToolOutput
from .registry import Registry, tool_spec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, MutableMapping

__all__ = ["call_tool", "capture_logs", "fake_context"]


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
) -> ToolContext:
    """A ToolContext for calling a handler directly in a test."""
    return ToolContext(
        thread_id=thread_id,
        run_id=run_id,
        tool_call_id=tool_call_id,
        assistant_id=assistant_id,
        deadline=anyio.current_time() + timeout_s,
        log=structlog.get_logger("tool").bind(),
    )


async def call_tool(
    fn: Callable[..., Any],
    arguments: str | dict[str, Any] = "{}",
    *,
    ctx: ToolContext | None = None,
    settings: ToolsSettings | None = None,
) -> ToolOutput:
    """Run one call of a ``@tool`` handler through the worker's real validation and error path.

    ``arguments`` is the model's raw JSON text (a dict is encoded for you). The returned
    ``ToolOutput`` holds the exact ``output`` string the model would see and the ``outcome``.
    """
    spec = tool_spec(fn)
    if spec is None:
        raise TypeError(f"{fn!r} is not decorated with @tool")
    ctx = ctx or fake_context()
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    round_ = Round(
        thread_id=ctx.thread_id,
        run_id=ctx.run_id,
        assistant_id=ctx.assistant_id,
        expires_at=None,
        tool_calls=(ToolCall(ctx.tool_call_id, spec.name, raw),),
        detected_at=anyio.current_time(),
    )
    dispatcher = Dispatcher(Registry([spec]), settings or ToolsSettings(), Metrics())
    (output,) = await dispatcher.run(round_, deadline=ctx.deadline)
    return output

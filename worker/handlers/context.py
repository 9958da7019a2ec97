"""ToolContext: what a handler may know about the call it is answering."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from structlog.typing import FilteringBoundLogger

__all__ = ["ToolContext"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


async def _no_thread_metadata() -> Mapping[str, str]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Injected into a handler that declares a parameter annotated ``ToolContext``.

    ``tool_call_id`` is stable across retries and restarts of the worker: use it as the
    idempotency key of side effects, since a handler may run again after a crash.
    ``deadline`` is on the ``anyio.current_time()`` clock. ``metadata`` is the run's
    ``metadata`` as the application set it (who the run acts for, say); ``assistant_id``
    names the assistant whose run it is.
    """

    thread_id: str
    run_id: str
    tool_call_id: str
    assistant_id: str
    deadline: float
    log: FilteringBoundLogger
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY, compare=False)
    load_thread_metadata: Callable[[], Awaitable[Mapping[str, str]]] = field(
        default=_no_thread_metadata, repr=False, compare=False)

    def seconds_left(self) -> float:
        """Seconds until the deadline; callable from sync handlers in worker threads too."""
        # On asyncio, anyio's clock is the loop's, which is time.monotonic().
        return self.deadline - time.monotonic()

    async def thread_metadata(self) -> Mapping[str, str]:
        """The thread's ``metadata``: one request, shared by the thread's calls for a while.

        A sync handler, which runs in a worker thread, calls it as
        ``anyio.from_thread.run(ctx.thread_metadata)``.

        Raises:
            ApiError: the thread could not be read.
        """
        return await self.load_thread_metadata()

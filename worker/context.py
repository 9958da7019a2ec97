"""ToolContext: what a handler may know about the call it is answering."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = ["ToolContext"]


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Injected into a handler that declares a parameter annotated ``ToolContext``.

    ``tool_call_id`` is stable across retries and restarts of the worker: use it as the
    idempotency key of side effects, since a handler may run again after a crash.
    ``deadline`` is on the ``anyio.current_time()`` clock.
    """

    thread_id: str
    run_id: str
    tool_call_id: str
    assistant_id: str
    deadline: float
    log: FilteringBoundLogger

    def seconds_left(self) -> float:
        """Seconds until the deadline; callable from sync handlers in worker threads too."""
        # On asyncio, anyio's clock is the loop's, which is time.monotonic().
        return self.deadline - time.monotonic()

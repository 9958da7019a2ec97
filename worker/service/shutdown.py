"""Shutdown: a signal drains the rounds in flight; a second one, or the drain timeout, stops now.

SIGHUP is taken like SIGTERM: a closed terminal or a supervisor's reload would otherwise kill
the worker outright, rounds and all, and there is nothing to reload.
"""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING

import anyio
import structlog

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["Shutdown"]

log = structlog.get_logger("worker.service.shutdown")


class Shutdown:
    """Owns the scope the rounds run in; signals move its deadline or cancel it."""

    def __init__(self, drain_timeout_s: float, *, stop: Callable[[], None],
                 in_flight: Callable[[], int]) -> None:
        """``stop`` ends the intake of new rounds; ``in_flight`` counts the rounds going on."""
        self._rounds: anyio.CancelScope | None = None  # made in the loop: anyio needs one
        self._drain_timeout_s = drain_timeout_s
        self._stop = stop
        self._in_flight = in_flight
        self._draining = False
        self._serving = False
        self._start_scope: anyio.CancelScope | None = None

    @property
    def _starting(self) -> anyio.CancelScope:
        if self._start_scope is None:
            self._start_scope = anyio.CancelScope()
        return self._start_scope

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Take signals for the whole life of the worker, its start included.

        A signal before ``serving`` cancels the start: a SIGTERM while resources load or the
        API is checked ends the process cleanly instead of by the signal's default action.
        """
        try:
            async with anyio.create_task_group() as signals:
                await signals.start(self.watch_signals)
                with self._starting:
                    yield
                signals.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The group only carries the signal task: what the worker raised is raised as it
            # was (a ConfigError stays a ConfigError for callers and the CLI).
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    def serving(self) -> anyio.CancelScope:
        """The scope the rounds run in, once the worker serves: a signal now drains them."""
        self._serving = True
        return self.rounds

    @property
    def rounds(self) -> anyio.CancelScope:
        """The scope the rounds run in."""
        if self._rounds is None:
            self._rounds = anyio.CancelScope()
        return self._rounds

    async def watch_signals(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Take SIGTERM, SIGINT and SIGHUP until the second one."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if self._draining:
                    log.warning("second signal: stopping now", signal=signum.name)
                    self.rounds.cancel()
                    return
                self._draining = True
                log.info("draining: finishing rounds in flight", signal=signum.name,
                         rounds=self._in_flight(), drain_timeout_s=self._drain_timeout_s)
                self._stop()
                if not self._serving:
                    self._starting.cancel()  # nothing taken yet: end the start here
                self.rounds.deadline = anyio.current_time() + self._drain_timeout_s

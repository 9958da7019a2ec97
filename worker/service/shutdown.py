"""Shutdown: a signal drains the rounds in flight; a second one, or the drain timeout, stops now.

SIGHUP is taken like SIGTERM: a closed terminal or a supervisor's reload would otherwise kill
the worker outright, rounds and all, and there is nothing to reload.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import anyio
import structlog

if TYPE_CHECKING:
    from collections.abc import Callable

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
                self.rounds.deadline = anyio.current_time() + self._drain_timeout_s

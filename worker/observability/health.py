"""Health: the stages report what they see; readiness and liveness are read from it.

Ready means the API has answered, and answered recently, the key is not refused for every
watched thread, every configured dependency answers, and the worker is not draining. Live means the poll loop still turns. Both are read by ``/readyz`` and
``/healthz`` and by the ``toolworker_ready`` gauge, from the server's thread too, so the clock
here is ``time.monotonic()``, not the event loop's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog

from worker.errors import ApiStatusError, AuthError
from worker.observability.redaction import redact_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.errors import ApiError

__all__ = ["OUTAGE_WARN_S", "Health"]

log = structlog.get_logger("worker.observability.health")

# An API silent this long (while requests fail) is said once as a warning.
OUTAGE_WARN_S = 60.0


class Health:
    """What the worker knows of its own health, reported by the stages as it happens."""

    def __init__(
        self,
        *,
        window_s: float = 30.0,
        stall_s: float = 25.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``window_s``: how recent an answer from the API must be; ``stall_s``: the loop."""
        self.window_s = window_s
        self.stall_s = stall_s
        self._clock = clock
        self._started = clock()
        self._answered: float | None = None
        self._heartbeat = clock()
        self._last_error: str | None = None
        self._auth_refused = False
        # (threads the key is refused for, threads watched), as the poller last counted them.
        self._key_refusals = (0, 0)
        self._outage: _Outage | None = None
        self._dependencies: dict[str, str | None] = {}
        self.draining = False

    @classmethod
    def for_interval(cls, idle_poll_interval_s: float) -> Health:
        """Windows that fit a poll loop waking at least every ``idle_poll_interval_s``."""
        return cls(window_s=max(3 * idle_poll_interval_s, 30.0),
                   stall_s=3 * idle_poll_interval_s + 10)

    def api_answered(self) -> None:
        """The API answered a request (any answer that is not a refusal of the key or a 5xx)."""
        self._answered = self._clock()
        self._auth_refused = False
        if self._outage is not None:
            self._outage.ended(self._answered)
            self._outage = None

    def api_failed(self, error: ApiError) -> None:
        """A request failed; the error's text, redacted, becomes the reason /readyz shows (an
        API may echo the key in its refusal).

        Failures until the next answer are one outage: its first failure and, past
        ``OUTAGE_WARN_S`` of silence, one more line are logged; its end says how many and how long.
        """
        self._last_error = redact_text(str(error))
        if isinstance(error, AuthError):
            self._auth_refused = True  # per thread, the poller tells (key_refusals)
            return
        if isinstance(error, ApiStatusError) and 400 <= error.status < 500 and error.status != 429:
            return  # the API answered: this request was wrong, the API is not away
        if self._outage is None:
            self._outage = _Outage(self._clock(), error)
        self._outage.failed(error, silent_s=self.since_answer_s())

    def key_refusals(self, refused: int, watched: int) -> None:
        """The poller's count of watched threads whose polls the API refuses the key for."""
        self._key_refusals = (refused, watched)

    def _key_refused(self) -> bool:
        refused, watched = self._key_refusals
        if watched:  # one refused thread (a key without access to it) is that thread's problem
            return refused >= watched
        return self._auth_refused

    def heartbeat(self) -> None:
        """The poll loop turned."""
        self._heartbeat = self._clock()

    def dependency(self, name: str, error: str | None) -> None:
        """A configured dependency (Redis for claims or intake) answered, or failed with error."""
        self._dependencies[name] = None if error is None else redact_text(error)

    def since_answer_s(self) -> float:
        """Seconds since the API last answered (since start when it never has)."""
        return self._clock() - (self._answered if self._answered is not None else self._started)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """(alive, reasons): alive unless the poll loop stopped turning."""
        stalled_s = self._clock() - self._heartbeat
        if stalled_s > self.stall_s:
            return False, {"reason": "the poll loop is stuck", "stalled_s": round(stalled_s, 1)}
        return True, {}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, reasons): the reasons explain the answer to whoever reads /readyz."""
        alive, reasons = self.liveness()
        if not alive:
            return False, reasons
        silent_s = self.since_answer_s()
        facts: dict[str, Any] = {"since_api_answer_s": round(silent_s, 1)}
        if self._key_refused():
            return False, {"reason": "the API refuses the key", "error": self._last_error, **facts}
        if self._answered is None:
            return False, {"reason": "the API has not answered yet", "error": self._last_error,
                           "api_answered": False}
        if silent_s > self.window_s:
            return False, {"reason": "the API has not answered recently",
                           "error": self._last_error, **facts}
        failing = {name: error for name, error in self._dependencies.items() if error}
        if failing:
            return False, {"reason": "a dependency does not answer", "dependencies": failing,
                           **facts}
        if self.draining:
            return False, {"reason": "draining for shutdown", **facts}
        return True, facts


class _Outage:
    """Failed requests with no answer between them: a warning at the start, another once
    the API has been silent ``OUTAGE_WARN_S``, and a line with the count when it ends."""

    __slots__ = ("count", "silence_warned", "started")

    def __init__(self, started: float, error: ApiError) -> None:
        self.started = started
        self.count = 0
        self.silence_warned = False
        log.warning("an API request failed; retrying, and counting failures until it answers",
                    error=str(error))

    def failed(self, error: ApiError, *, silent_s: float) -> None:
        self.count += 1
        if not self.silence_warned and silent_s >= OUTAGE_WARN_S:
            self.silence_warned = True
            log.warning(f"the API has not answered for {OUTAGE_WARN_S:.0f} s; rounds wait for it",
                        failures=self.count, error=str(error))

    def ended(self, now: float) -> None:
        log.warning("the API answers again", failures=self.count,
                    outage_s=round(now - self.started, 1))

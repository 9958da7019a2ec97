"""Health: ready only once the API has answered; a refused key per thread; one line per outage."""

from __future__ import annotations

from worker.errors import ApiConnectionError, ApiStatusError, AuthError
from worker.observability.health import OUTAGE_WARN_S, Health
from worker.testing import capture_logs


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_health() -> tuple[Health, FakeClock]:
    clock = FakeClock()
    return Health(window_s=30.0, clock=clock), clock


def refused() -> AuthError:
    return AuthError(401, "list_runs", "Incorrect API key provided")


def test_not_ready_until_the_api_has_answered_once() -> None:
    """A fresh worker whose API never answered is not ready, even inside the window."""
    health, clock = make_health()
    clock.now += 1
    ready, reasons = health.readiness()
    assert not ready
    assert reasons["reason"] == "the API has not answered yet"
    health.api_answered()
    assert health.readiness()[0]


def test_a_key_refused_for_one_thread_of_two_keeps_the_worker_ready() -> None:
    """Readiness turns on the key only when it is refused for every watched thread."""
    health, _ = make_health()
    health.api_answered()
    health.api_failed(refused())
    health.key_refusals(1, 2)
    assert health.readiness()[0]
    health.key_refusals(2, 2)
    ready, reasons = health.readiness()
    assert not ready
    assert reasons["reason"] == "the API refuses the key"


def test_an_outage_is_one_warning_then_one_line_with_its_count_and_duration() -> None:
    """Many failed requests: a warning at the start, one after a minute of silence, and one
    line with the count and the duration when the API answers, however many retries."""
    health, clock = make_health()
    health.api_answered()
    error = ApiConnectionError("list_runs", "cannot connect")
    with capture_logs() as logs:
        for _ in range(50):
            clock.now += 0.5
            health.api_failed(error)
        clock.now += OUTAGE_WARN_S
        health.api_failed(error)
        health.api_failed(error)
        clock.now += 1
        health.api_answered()
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [
        ("an API request failed; retrying, and counting failures until it answers", "warning"),
        ("the API has not answered for 60 s; rounds wait for it", "warning"),
        ("the API answers again", "warning"),
    ]
    assert logs[-1]["failures"] == 52
    assert logs[-1]["outage_s"] == 85.5


def test_a_refused_key_is_not_an_outage() -> None:
    """Refusals are tracked per thread by the poller; a good answer between them logs nothing."""
    health, _ = make_health()
    with capture_logs() as logs:
        for _ in range(5):
            health.api_failed(refused())
            health.api_answered()
    assert logs == []


def test_a_refused_request_is_not_an_outage() -> None:
    """A 400 is the API answering: no outage lines, however often."""
    health, _ = make_health()
    with capture_logs() as logs:
        for _ in range(3):
            health.api_answered()
            health.api_failed(ApiStatusError(400, "list_runs", "Invalid 'limit'"))
    assert logs == []

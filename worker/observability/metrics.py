"""Every ``toolworker_*`` metric, declared once on the worker's own CollectorRegistry."""

from __future__ import annotations

from importlib.metadata import version
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from worker.errors import ApiErrorKind
from worker.models import ApprovalDecision, CallOutcome, SubmitOutcome

__all__ = ["API_ERROR_KINDS", "APPROVAL_DECISIONS", "CALL_OUTCOMES", "HTTP_CLOSE_REASONS",
           "INTAKE_REFUSALS", "SUBMIT_OUTCOMES", "Metrics"]

# Closed sets of label values: label sets stay bounded, no ids ever become labels.
CALL_OUTCOMES = tuple(outcome.value for outcome in CallOutcome)
SUBMIT_OUTCOMES = tuple(outcome.value for outcome in SubmitOutcome)
API_ERROR_KINDS = tuple(kind.value for kind in ApiErrorKind)
APPROVAL_DECISIONS = tuple(decision.value for decision in ApprovalDecision)
# Why POST /v1/watch or the Redis stream refused a request: wrong token, a body that is not
# {"thread_id": ...}, an id no API issues, the worker at [watch] max_threads, an address
# answered 429 after too many failures, bytes that are not UTF-8, or an entry that raised
# something unforeseen (dropped, never fatal), a Host that is not loopback on a loopback
# server's /status or /v1/watch (DNS rebinding), or the watch store could not commit it.
INTAKE_REFUSALS = ("auth", "bad_request", "bad_id", "full", "throttled", "undecodable", "error",
                   "replayed", "bad_host", "unavailable")

# No `*_created` series: a timestamp per counter and histogram series, which doubles what is
# scraped and which no dashboard or alert reads (process_start_time_seconds says when it
# started). prometheus_client's switch is process-wide; the worker owns its process.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Why the HTTP server closed a connection (worker.service.connections): idle too long, a
# request not whole in time, the longest-idle one making room past the cap, or a new one
# refused while every connection was busy.
HTTP_CLOSE_REASONS = ("idle", "slow_request", "evicted", "refused", "malformed")

# Read once at import: it reads package metadata from disk.
_VERSION = version("tool-worker")

# The endpoints every worker uses; their error series exist from the start.
_POLLED_ENDPOINTS = ("retrieve_run", "list_runs", "submit_tool_outputs")

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The worker's metrics; one instance per worker, so tests read exact values.

    Counters with a closed label set start every known series at 0, so that ``increase()``
    in an alert sees the first event too.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, process_metrics: bool = False
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._declare_calls_and_rounds()
        self._declare_api()
        self._declare_watch()
        self._declare_health()
        if process_metrics:
            # process_* (memory, CPU, open files, start time) show restarts and leaks. They read
            # /proc, so the server renders the page in a thread.
            ProcessCollector(registry=self.registry)

    def _declare_calls_and_rounds(self) -> None:
        r = self.registry
        self.tool_calls = Counter(
            "toolworker_tool_calls", "Tool calls answered, by tool and outcome.",
            ["tool", "outcome"], registry=r,
        )
        self.tool_call_duration = Histogram(
            "toolworker_tool_call_duration_seconds", "Time a handler took, by tool.",
            ["tool"], buckets=_DURATION_BUCKETS, registry=r,
        )
        self.in_flight_calls = Gauge(
            "toolworker_tool_calls_in_flight", "Tool calls running now.", registry=r,
        )
        self.abandoned_threads = Counter(
            "toolworker_abandoned_threads",
            "Sync handlers that overran their timeout and were left running in their thread.",
            ["tool"], registry=r,
        )
        self.rounds = _zeroed(Counter(
            "toolworker_rounds_submitted", "Rounds finished, by submission outcome.",
            ["outcome"], registry=r,
        ), SUBMIT_OUTCOMES)
        self.round_latency = Histogram(
            "toolworker_round_latency_seconds",
            "From detecting a requires_action round to its submission being answered.",
            buckets=_DURATION_BUCKETS, registry=r,
        )
        self.rounds_found = _zeroed(Counter(
            "toolworker_rounds_found",
            "Rounds found, by how: a poll, or the stream of the previous round's submission.",
            ["by"], registry=r,
        ), ("poll", "stream"))
        self.tool_approvals = _zeroed(Counter(
            "toolworker_tool_approvals",
            "MCP tool calls waiting for approval, by decision: approve or deny (taken by the "
            "run), leave (left for a person, counted once per run).",
            ["decision"], registry=r,
        ), APPROVAL_DECISIONS)

    def _declare_api(self) -> None:
        r = self.registry
        self.api_requests = Counter(
            "toolworker_api_requests", "Requests to the Assistants API, by endpoint and status class.",
            ["endpoint", "status"], registry=r,
        )
        self.api_request_duration = Histogram(
            "toolworker_api_request_duration_seconds", "Duration of API requests, by endpoint.",
            ["endpoint"], buckets=_DURATION_BUCKETS, registry=r,
        )
        self.api_errors = Counter(
            "toolworker_api_errors",
            "Failed API requests, by endpoint and kind (auth, not_found, rate_limited, ...).",
            ["endpoint", "kind"], registry=r,
        )
        for endpoint in _POLLED_ENDPOINTS:
            for kind in API_ERROR_KINDS:
                self.api_errors.labels(endpoint, kind)
        self.api_retries = _zeroed(Counter(
            "toolworker_api_retries", "API requests retried, by endpoint.", ["endpoint"], registry=r,
        ), _POLLED_ENDPOINTS)
        self.streams_open = Gauge(
            "toolworker_streams_open", "Streamed submissions held open now.", registry=r,
        )
        self.streams_broken = Counter(
            "toolworker_streams_broken",
            "Streams that broke or went silent after their outputs were accepted.", registry=r,
        )
        self.clock_offset = Gauge(
            "toolworker_clock_offset_seconds",
            "The API's clock minus ours, estimated from the Date of its answers.", registry=r,
        )

    def _declare_watch(self) -> None:
        r = self.registry
        self.intake_refused = _zeroed(Counter(
            "toolworker_intake_refused",
            "Watch requests refused (POST /v1/watch and the Redis stream), by reason.",
            ["reason"], registry=r,
        ), INTAKE_REFUSALS)
        self.watched_threads = Gauge(
            "toolworker_watched_threads", "Threads the worker follows.", registry=r,
        )
        self.active_runs = Gauge(
            "toolworker_active_runs", "Non-terminal runs the worker follows.", registry=r,
        )
        self.runs_skipped = Counter(
            "toolworker_runs_skipped",
            "Runs left alone, by reason (e.g. an action other than submit_tool_outputs).",
            ["reason"], registry=r,
        )
        self.poll_cycles = Counter("toolworker_polls", "Thread and run polls made.", registry=r)
        self.threads_dropped = Counter(
            "toolworker_threads_dropped",
            "Watched threads dropped because the API does not know them (404).", registry=r,
        )
        self.threads_retired = Counter(
            "toolworker_threads_retired",
            "Watched threads forgotten after [watch] forget_after_s without a run.", registry=r,
        )
        self.poll_lag = Histogram(
            "toolworker_poll_lag_seconds", "How late polls start behind their schedule.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r,
        )

    def _declare_health(self) -> None:
        self.http_connections = Gauge(
            "toolworker_http_connections", "Connections open to the worker's HTTP server now.",
            registry=self.registry,
        )
        self.http_connections_closed = _zeroed(Counter(
            "toolworker_http_connections_closed",
            "Connections the HTTP server closed to bound what clients hold, by reason.",
            ["reason"], registry=self.registry,
        ), HTTP_CLOSE_REASONS)
        self.http_accept_errors = Counter(
            "toolworker_http_accept_errors",
            "Connections the HTTP server failed to accept (out of file descriptors).",
            registry=self.registry,
        )
        self.ready = Gauge(
            "toolworker_ready", "1 while /readyz would answer ready, else 0.",
            registry=self.registry,
        )
        self.build = Info("toolworker_build", "Version of tool-worker.", registry=self.registry)
        self.build.info({"version": _VERSION})

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


_C = TypeVar("_C", bound=Counter)


def _zeroed(counter: _C, values: tuple[str, ...]) -> _C:
    """The counter, with a series at 0 for each of its known label values."""
    for value in values:
        counter.labels(value)
    return counter

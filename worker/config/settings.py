"""Settings: every section of the configuration as frozen, validated values.

``config.load_config`` builds them from the TOML file, the environment and secret files; the
rest of the worker reads them and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from worker.config.redis_url import parse_redis_url
from worker.config.secret import Secret
from worker.errors import ConfigError

__all__ = [
    "ApiSettings",
    "ApprovalRule",
    "ApprovalsSettings",
    "CoordinationSettings",
    "IntakeSettings",
    "LoggingSettings",
    "ServerSettings",
    "Settings",
    "ShutdownSettings",
    "ToolsSettings",
    "TracingSettings",
    "WatchSettings",
]


class _Section(BaseModel):
    # allow_inf_nan=False: "inf" as a timeout would wait for ever, and "nan" compares false
    # with everything, so every bound (gt=0) would let it through.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


_AGENTS_BASE_URL = "https://api.openai.com/v1"


class ApiSettings(_Section):
    """``[api]``: where the API is, which protocol it speaks and how to talk to it."""

    # "openai" and "azure" speak threads/runs (Assistants); "agents" speaks OpenAI's Agents
    # API (sessions/turns; docs/agents-api.md).
    backend: Literal["openai", "azure", "agents"] = "openai"
    # No default for "openai" and "azure": OpenAI retired its Assistants endpoints, so the
    # address must be chosen (load_config names the choices); "agents" defaults to OpenAI's.
    base_url: str | None = None
    api_key_file: Path | None = None
    organization: str | None = None
    project: str | None = None
    request_timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=128, ge=1)
    max_retries: int = Field(default=4, ge=0)
    # The request budget: never more requests than this in any one-second window (0: no limit).
    max_requests_per_s: int = Field(default=200, ge=0)
    # Answers larger than this are refused unread (a counted bad_answer), so a broken or
    # hostile server cannot make the worker parse hundreds of megabytes.
    max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    # Submit with "stream": true and take the run's next round from the stream, instead of
    # polling for it. Streams held open while the model thinks have their own max_streams
    # connections, so polls and submissions always find one; past the cap, runs are polled.
    # A stream silent for stream_idle_timeout_s is given up (and its run polled).
    stream: bool = True
    max_streams: int = Field(default=96, ge=1)
    stream_idle_timeout_s: float = Field(default=120.0, gt=0)
    # A stream that lasts longer than this in all (events trickling in for ever) is given up
    # too: the outputs it carried were accepted, and the run is polled from then on.
    stream_max_s: float = Field(default=600.0, gt=0)
    # backend = "azure" only: the api-version of every request, and how to authenticate.
    api_version: str = "v1"
    # Foundry project endpoints take Microsoft Entra ID tokens; "api_key" is for gateways.
    azure_auth: Literal["api_key", "entra"] = "entra"
    token_scope: str = "https://ai.azure.com/.default"  # noqa: S105 - a scope, not a secret


    @model_validator(mode="before")
    @classmethod
    def _agents_default_base_url(cls, data: Any) -> Any:
        # The Agents API is OpenAI's own service, so its address can be the default.
        if isinstance(data, dict) and data.get("backend") == "agents" and "base_url" not in data:
            return {**data, "base_url": _AGENTS_BASE_URL}
        return data

class WatchSettings(_Section):
    """``[watch]``: which threads to follow and how often to look at them."""

    threads: tuple[str, ...] = ()
    # backend = "agents": sessions to follow, and the agents whose sessions discover lists
    # (all of the key's sessions when empty).
    sessions: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    # An active run is polled this soon after it changed, then 1.25x less often each time it
    # is seen unchanged (up to idle_poll_interval_s). Rounds after the first come from the
    # submission's stream, so this mostly paces finding a run's first round.
    active_poll_interval_s: float = Field(default=0.2, gt=0)
    # Idle threads: warm ones (a run seen in the last minute) every min_idle_poll_interval_s;
    # cold ones share half of the request budget, and never wait more than idle_poll_interval_s.
    min_idle_poll_interval_s: float = Field(default=1.0, gt=0)
    idle_poll_interval_s: float = Field(default=5.0, gt=0)
    max_concurrent_polls: int = Field(default=64, ge=1)
    # A poll is one request, never retried in place (the schedule retries it): this bounds
    # how long a hung API holds a poll's slot.
    poll_timeout_s: float = Field(default=10.0, gt=0)
    # Threads watched at most; intake beyond it is refused (429), so a flood cannot grow
    # the worker without bound.
    max_threads: int = Field(default=50_000, ge=1)
    # While a round's handlers run, its run is read this often, so that handlers of a run that
    # was cancelled (or answered elsewhere) are stopped instead of running to their timeout.
    cancel_check_interval_s: float = Field(default=3.0, gt=0)
    discover: bool = False
    discover_interval_s: float = Field(default=30.0, gt=0)
    # Pages of the thread listing read per interval at most (100 threads each); a longer
    # listing is read on in the next interval, so a listing that never ends cannot hold it.
    discover_max_pages: int = Field(default=100, ge=1)
    # Answer only the runs of these assistants (all when empty); others are left alone.
    assistants: tuple[str, ...] = ()
    # Where what is watched is kept (docs/scaling.md): "auto" is Redis with [coordination]
    # backend = "redis" (shared by the replicas), else a SQLite file at state_path (default
    # $STATE_DIRECTORY/watch.sqlite3 under systemd, else ./.tool-worker/watch.sqlite3);
    # "memory" keeps nothing past the process (tests, the demo).
    store: Literal["auto", "memory", "sqlite", "redis"] = "auto"
    state_path: Path | None = None
    # A thread announced, taken from the intake or discovered, with no run seen for this long,
    # is forgotten; threads listed above never are, nor a thread whose run is going on.
    forget_after_s: float = Field(default=86_400.0, gt=0)
    # How often the store is read for what other replicas added or forgot, idle entries are
    # retired, and a Redis that came back empty is written back.
    store_sync_interval_s: float = Field(default=2.0, gt=0)


class ToolsSettings(_Section):
    """``[tools]``: handler modules and the limits every call runs under."""

    modules: tuple[str, ...] = ("tool_worker_tools.builtin",)
    default_timeout_s: float = Field(default=60.0, gt=0)
    deadline_margin_s: float = Field(default=5.0, ge=0)
    max_threads: int = Field(default=32, ge=1)
    max_output_chars: int = Field(default=32_768, ge=256)
    max_arguments_chars: int = Field(default=1_000_000, ge=2)
    max_calls_per_round: int = Field(default=128, ge=1)
    max_concurrent_rounds: int = Field(default=64, ge=1)
    # How long a round's outputs are submitted again after failures when the run has no
    # expires_at (with one, they are tried until it).
    submit_window_s: float = Field(default=600.0, gt=0)
    # A round that calls a tool not registered here: "error" answers it with an error output;
    # "leave" does not claim it (another deployment serves that tool). Unset: "leave" with
    # [watch] discover = true and no [watch] assistants, "error" otherwise.
    unknown: Literal["error", "leave"] | None = None
    # ctx.thread_metadata() reads a thread once per this long; its calls share the answer.
    thread_metadata_ttl_s: float = Field(default=30.0, ge=0)


class ServerSettings(_Section):
    """``[server]``: the worker's own HTTP server (metrics, health)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    # Bearer token for POST /v1/watch; the endpoint answers 404 while it is unset.
    # Never in the file: TOOL_WORKER__SERVER__WATCH_TOKEN, or watch_token_file.
    watch_token: Secret | None = None
    watch_token_file: Path | None = None
    # After this many failed watch requests from one address within the window, that address
    # is answered 429 until the window ends (0: never).
    watch_max_failures: int = Field(default=20, ge=0)
    watch_failure_window_s: float = Field(default=60.0, gt=0)
    # What a client may hold (no token needed to open a connection): at most max_connections
    # (lowered to fit ulimit -n less what the API and Redis need), each closed after
    # idle_timeout_s without a request, and a request must be whole and answered within
    # request_timeout_s of its first byte.
    max_connections: int = Field(default=512, ge=1)
    idle_timeout_s: float = Field(default=15.0, gt=0, allow_inf_nan=False)
    request_timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # The Standard Webhooks secret (whsec_...) of POST /v1/webhooks/openai; the endpoint
    # answers 404 while it is unset. Never in the file: TOOL_WORKER__SERVER__WEBHOOK_SECRET,
    # or webhook_secret_file.
    webhook_secret: Secret | None = None
    webhook_secret_file: Path | None = None


class LoggingSettings(_Section):
    """``[logging]``: format and level; ``auto`` is console on a terminal, JSON otherwise."""

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"
    log_arguments: bool = False


class TracingSettings(_Section):
    """``[tracing]``: each round as an OpenTelemetry trace (the ``[otel]`` extra; OTLP/HTTP)."""

    enabled: bool = False
    # OTEL_SERVICE_NAME, when set, wins: the standard OTEL_* variables are honoured.
    service_name: str = "tool-worker"


class ShutdownSettings(_Section):
    """``[shutdown]``: how long SIGTERM waits for rounds in flight before giving up on them."""

    drain_timeout_s: float = Field(default=30.0, ge=0)


class CoordinationSettings(_Section):
    """``[coordination]``: how replicas agree that each round is dispatched once."""

    backend: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    lease_s: float = Field(default=30.0, gt=0)
    key_prefix: str = "tool-worker"


class IntakeSettings(_Section):
    """``[intake]``: work announced at run time through a Redis stream."""

    redis_stream: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    stream: str = "tool-worker:watch"
    group: str = "tool-worker"
    # Entries a dead replica read but never acknowledged are taken over after this long.
    claim_idle_s: float = Field(default=30.0, gt=0)


class ApprovalRule(_Section):
    """One ``[approvals] rules`` item: glob patterns on the MCP server label and tool name."""

    server_label: str = Field(default="*", min_length=1)
    tool: str = Field(default="*", min_length=1)
    decision: Literal["approve", "deny", "leave"]


class ApprovalsSettings(_Section):
    """``[approvals]``: how MCP tool calls waiting for approval are answered (azure, agents).

    The first rule that matches a call decides it; a call no rule matches is left for a person.
    """

    rules: tuple[ApprovalRule, ...] = ()


class Settings(_Section):
    """Everything the worker is configured with; build it with ``load_config``."""

    api: ApiSettings = ApiSettings()
    watch: WatchSettings = WatchSettings()
    tools: ToolsSettings = ToolsSettings()
    server: ServerSettings = ServerSettings()
    logging: LoggingSettings = LoggingSettings()
    tracing: TracingSettings = TracingSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    coordination: CoordinationSettings = CoordinationSettings()
    intake: IntakeSettings = IntakeSettings()
    approvals: ApprovalsSettings = ApprovalsSettings()
    api_key: Secret | None = Field(default=None, exclude=True, repr=False)

    def secret_values(self) -> tuple[str, ...]:
        """The literal secrets configured (key, watch token, Redis passwords), for redaction."""
        values = [self.api_key.get() if self.api_key else None,
                  self.server.watch_token.get() if self.server.watch_token else None,
                  self.server.webhook_secret.get() if self.server.webhook_secret else None]
        for url in (self.coordination.redis_url, self.intake.redis_url):
            try:
                password = parse_redis_url(url, key="redis_url").password
            except ConfigError:  # not a URL at all: nothing in it to hide
                continue
            values.append(password.get() if password else None)
        return tuple(sorted({v for v in values if v}))

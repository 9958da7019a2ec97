"""Settings: the TOML file, ``TOOL_WORKER__SECTION__KEY`` overrides and the API key, as frozen values."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError, InvalidId
from .ids import MAX_ID_CHARS, is_valid_id
from .secret import Secret

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ApiSettings",
    "ApprovalRule",
    "ApprovalsSettings",
    "CoordinationSettings",
    "IntakeSettings",
    "LoggingSettings",
    "Secret",
    "ServerSettings",
    "Settings",
    "ShutdownSettings",
    "ToolsSettings",
    "WatchSettings",
    "api_key_source",
    "load_config",
]

ENV_PREFIX = "TOOL_WORKER__"
API_KEY_ENV = "OPENAI_API_KEY"
AZURE_API_KEY_ENV = "AZURE_AI_API_KEY"
WATCH_TOKEN_ENV = f"{ENV_PREFIX}SERVER__WATCH_TOKEN"
# Keys whose environment values are taken verbatim: a token of digits stays a string.
_SECRET_ENV_KEYS = frozenset({"watch_token"})


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApiSettings(_Section):
    """``[api]``: where the Assistants API is and how to talk to it."""

    backend: Literal["openai", "azure"] = "openai"
    base_url: str = "https://api.openai.com/v1"
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
    # polling for it. Streams held open while the model thinks are capped below
    # max_connections, so polls and submissions always find a connection; past the cap,
    # runs are polled. A stream silent for stream_idle_timeout_s is given up (and polled).
    stream: bool = True
    max_streams: int = Field(default=96, ge=1)
    stream_idle_timeout_s: float = Field(default=120.0, gt=0)
    # backend = "azure" only: the api-version of every request, and how to authenticate.
    api_version: str = "v1"
    # Foundry project endpoints take Microsoft Entra ID tokens; "api_key" is for gateways.
    azure_auth: Literal["api_key", "entra"] = "entra"
    token_scope: str = "https://ai.azure.com/.default"  # noqa: S105 - a scope, not a secret


class WatchSettings(_Section):
    """``[watch]``: which threads to follow and how often to look at them."""

    threads: tuple[str, ...] = ()
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
    # Answer only the runs of these assistants (all when empty); others are left alone.
    assistants: tuple[str, ...] = ()


class ToolsSettings(_Section):
    """``[tools]``: handler modules and the limits every call runs under."""

    modules: tuple[str, ...] = ("tools.builtin",)
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


class LoggingSettings(_Section):
    """``[logging]``: format and level; ``auto`` is console on a terminal, JSON otherwise."""

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"
    log_arguments: bool = False


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
    """``[approvals]``: how MCP tool calls waiting for approval are answered (backend azure).

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
    shutdown: ShutdownSettings = ShutdownSettings()
    coordination: CoordinationSettings = CoordinationSettings()
    intake: IntakeSettings = IntakeSettings()
    approvals: ApprovalsSettings = ApprovalsSettings()
    api_key: Secret | None = Field(default=None, exclude=True, repr=False)

    def secret_values(self) -> tuple[str, ...]:
        """The literal secrets configured (key, watch token, Redis passwords), for redaction."""
        values = [self.api_key.get() if self.api_key else None,
                  self.server.watch_token.get() if self.server.watch_token else None]
        for url in (self.coordination.redis_url, self.intake.redis_url):
            try:
                values.append(urlsplit(url).password)
            except ValueError:  # not a URL at all: nothing in it to hide
                continue
        return tuple(sorted({v for v in values if v}))


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    require_api_key: bool = True,
) -> Settings:
    """Read the TOML file (if any), apply environment overrides and find the API key.

    Raises:
        ConfigError: naming the file and key of the first problem.
    """
    env = os.environ if environ is None else environ
    source = str(path) if path is not None else "defaults"
    data = _read_toml(Path(path)) if path is not None else {}
    _refuse_inline_secrets(data, source, in_file=True)
    _apply_env_overrides(data, env)
    _refuse_inline_secrets(data, source, in_file=False)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, source) from None
    _check_backend(settings, source)
    _check_threads(settings, source)
    settings = _read_watch_token_file(settings, source)
    key = _find_api_key(settings.api, env)
    needs_key = not (settings.api.backend == "azure" and settings.api.azure_auth == "entra")
    if require_api_key and needs_key and key is None:
        env_names = (f"{AZURE_API_KEY_ENV} (or {API_KEY_ENV})"
                     if settings.api.backend == "azure" else API_KEY_ENV)
        raise ConfigError(
            f"no API key: set {env_names} or point [api] api_key_file at a file holding it",
            source=source,
            key="api.api_key_file",
        )
    return settings.model_copy(update={"api_key": key})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("file not found; pass an existing --config FILE", source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", source=str(path)) from None


def _apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """``TOOL_WORKER__WATCH__THREADS='["thread_a"]'`` sets ``[watch] threads``."""
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(
                "environment overrides look like TOOL_WORKER__SECTION__KEY", source=name
            )
        section, key = parts
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError("is not a section", source=name, key=section)
        table[key] = raw if key in _SECRET_ENV_KEYS else _parse_env_value(raw)


def _parse_env_value(raw: str) -> Any:
    # A TOML literal ("5", "true", '["a", "b"]') keeps its type; anything else is a string.
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _find_api_key(api: ApiSettings, env: Mapping[str, str]) -> Secret | None:
    if api.api_key_file is not None:
        try:
            value = api.api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the API key file {api.api_key_file}: {exc.strerror}",
                key="api.api_key_file",
            ) from None
        if not value:
            raise ConfigError(f"the API key file {api.api_key_file} is empty", key="api.api_key_file")
        return Secret(value)
    names = (AZURE_API_KEY_ENV, API_KEY_ENV) if api.backend == "azure" else (API_KEY_ENV,)
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return Secret(value)
    return None


def _refuse_inline_secrets(data: dict[str, Any], source: str, *, in_file: bool) -> None:
    """Keys and tokens never live in the file: say where they go instead of "unknown key"."""
    api = data.get("api")
    for key, present in (("api_key", "api_key" in data),
                         ("api.api_key", isinstance(api, dict) and "api_key" in api)):
        if present:
            raise ConfigError(
                f"the API key is never read from the configuration: set {API_KEY_ENV} "
                f"(backend \"openai\") or {AZURE_API_KEY_ENV} (backend \"azure\" with "
                "azure_auth = \"api_key\") in the environment, or point [api] api_key_file "
                "at a file that holds only the key",
                source=source, key=key,
            )
    server = data.get("server")
    if in_file and isinstance(server, dict) and "watch_token" in server:
        raise ConfigError(
            f"the watch token is never read from the file: set {WATCH_TOKEN_ENV} in the "
            "environment, or point [server] watch_token_file at a file that holds only the token",
            source=source, key="server.watch_token",
        )


def _read_watch_token_file(settings: Settings, source: str) -> Settings:
    server = settings.server
    if server.watch_token_file is None:
        return settings
    if server.watch_token is not None:
        raise ConfigError(f"set {WATCH_TOKEN_ENV} or watch_token_file, not both",
                          source=source, key="server.watch_token_file")
    try:
        value = server.watch_token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {server.watch_token_file}: {exc.strerror}",
                          source=source, key="server.watch_token_file") from None
    if not value:
        raise ConfigError(f"{server.watch_token_file} is empty",
                          source=source, key="server.watch_token_file")
    token = server.model_copy(update={"watch_token": Secret(value)})
    return settings.model_copy(update={"server": token})


def _check_threads(settings: Settings, source: str) -> None:
    for key, what in (("threads", "thread id"), ("assistants", "assistant id")):
        for index, object_id in enumerate(getattr(settings.watch, key)):
            if not is_valid_id(object_id):
                problem = InvalidId(what, object_id, max_chars=MAX_ID_CHARS)
                raise ConfigError(str(problem), source=source, key=f"watch.{key}[{index}]")


def api_key_source(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """Where the credentials come from, as ``check-config`` reports it."""
    api, env = settings.api, os.environ if environ is None else environ
    if api.backend == "azure" and api.azure_auth == "entra":
        return "Microsoft Entra ID (DefaultAzureCredential)"
    if api.api_key_file is not None:
        return str(api.api_key_file)
    names = (AZURE_API_KEY_ENV, API_KEY_ENV) if api.backend == "azure" else (API_KEY_ENV,)
    return next((name for name in names if env.get(name, "").strip()), " or ".join(names))


def _check_backend(settings: Settings, source: str) -> None:
    api = settings.api
    if api.stream and api.max_streams >= api.max_connections:
        raise ConfigError(
            f"max_streams ({api.max_streams}) must be below max_connections "
            f"({api.max_connections}), so that polls and submissions always find a connection",
            source=source,
            key="api.max_streams",
        )
    if settings.watch.discover and settings.api.backend != "azure":
        raise ConfigError(
            "the OpenAI API cannot list threads, so discover needs backend = \"azure\"; "
            "name the threads in [watch] threads instead",
            source=source,
            key="watch.discover",
        )
    if settings.approvals.rules and settings.api.backend != "azure":
        raise ConfigError(
            "only Azure's agents service asks for tool approvals, so [approvals] rules need "
            "backend = \"azure\"; remove them for the OpenAI API",
            source=source,
            key="approvals.rules",
        )


def _config_error(exc: ValidationError, source: str) -> ConfigError:
    first = exc.errors()[0]
    location = first["loc"]
    key = ".".join(str(part) for part in location)
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key; see config.example.toml for the keys that exist"
    return ConfigError(message, source=source, key=key)

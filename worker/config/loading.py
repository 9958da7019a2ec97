"""load_config: the TOML file, ``TOOL_WORKER__SECTION__KEY`` overrides and secret files, as Settings.

The sections themselves are ``worker.config.settings``; they are re-exported here.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from worker.config.redis_url import parse_redis_url
from worker.config.secret import Secret
from worker.config.secret_files import check_secret_value, read_secret_file
from worker.config.settings import (
    ApiSettings,
    ApprovalRule,
    ApprovalsSettings,
    CoordinationSettings,
    IntakeSettings,
    LoggingSettings,
    ServerSettings,
    Settings,
    ShutdownSettings,
    ToolsSettings,
    TracingSettings,
    WatchSettings,
)
from worker.errors import ConfigError, InvalidId
from worker.ids import MAX_ID_CHARS, is_valid_id

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
    "TracingSettings",
    "WatchSettings",
    "api_key_source",
    "load_config",
    "missing_base_url",
]

ENV_PREFIX = "TOOL_WORKER__"
API_KEY_ENV = "OPENAI_API_KEY"
AZURE_API_KEY_ENV = "AZURE_AI_API_KEY"
WATCH_TOKEN_ENV = f"{ENV_PREFIX}SERVER__WATCH_TOKEN"
# Keys whose environment values are taken verbatim: a token of digits stays a string.
WEBHOOK_SECRET_ENV = f"{ENV_PREFIX}SERVER__WEBHOOK_SECRET"
_SECRET_ENV_KEYS = frozenset({"watch_token", "webhook_secret"})
# Shorter watch tokens are a config error: the throttle alone does not stop guessing them.
MIN_WATCH_TOKEN_CHARS = 16
# Prints the example configuration, every key with its default (it ships with the package).
EXAMPLE_COMMAND = "tool-worker check-config --example"


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
    from_env = _apply_env_overrides(data, env)
    _refuse_inline_secrets(data, source, in_file=False)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, source, from_env) from None
    _check_backend(settings, source)
    _check_threads(settings, source)
    _check_redis_urls(settings, source)
    settings = _read_watch_token_file(settings, source)
    _check_watch_token(settings, source)
    settings = _read_webhook_secret_file(settings, source)
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
    if require_api_key and settings.api.base_url is None:  # both are for talking to the API
        raise ConfigError(missing_base_url(settings.api), source=source, key="api.base_url")
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


def _apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """``TOOL_WORKER__WATCH__THREADS='["thread_a"]'`` sets ``[watch] threads``.

    Returns the variable that set each (section, key), so an error is blamed on it.
    """
    from_env: dict[tuple[str, str], str] = {}
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
        from_env[(section, key)] = name
    return from_env


def _parse_env_value(raw: str) -> Any:
    # A TOML literal ("5", "true", '["a", "b"]') keeps its type; anything else is a string.
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _find_api_key(api: ApiSettings, env: Mapping[str, str]) -> Secret | None:
    if api.api_key_file is not None:
        return Secret(read_secret_file(api.api_key_file, what="the API key",
                                       key="api.api_key_file"))
    names = (AZURE_API_KEY_ENV, API_KEY_ENV) if api.backend == "azure" else (API_KEY_ENV,)
    for name in names:
        if env.get(name, "").strip():
            return Secret(check_secret_value(env[name], what="the API key", key=name))
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
    if in_file and isinstance(server, dict) and "webhook_secret" in server:
        raise ConfigError(
            f"the webhook secret is never read from the file: set {WEBHOOK_SECRET_ENV} in the "
            "environment, or point [server] webhook_secret_file at a file that holds only it",
            source=source, key="server.webhook_secret",
        )


def _read_watch_token_file(settings: Settings, source: str) -> Settings:
    server = settings.server
    if server.watch_token_file is None:
        return settings
    if server.watch_token is not None:
        raise ConfigError(f"set {WATCH_TOKEN_ENV} or watch_token_file, not both",
                          source=source, key="server.watch_token_file")
    value = read_secret_file(server.watch_token_file, what="the watch token", source=source,
                             key="server.watch_token_file")
    token = server.model_copy(update={"watch_token": Secret(value)})
    return settings.model_copy(update={"server": token})


def _check_watch_token(settings: Settings, source: str) -> None:
    """A watch token is one guess-proof word: at least ``MIN_WATCH_TOKEN_CHARS``, no spaces.

    It guards POST /v1/watch and the status page beyond loopback with no second factor; the
    throttle slows guessing, but a token of a few characters falls to it anyway.
    """
    token = settings.server.watch_token
    if token is None:
        return
    key = "server.watch_token_file" if settings.server.watch_token_file else WATCH_TOKEN_ENV
    value = check_secret_value(token.get(), what="the watch token", key=key, source=source)
    if len(value) < MIN_WATCH_TOKEN_CHARS:
        raise ConfigError(
            f"the watch token has {len(value)} characters; use at least "
            f"{MIN_WATCH_TOKEN_CHARS} (for example: openssl rand -hex 24)",
            source=source, key=key)


def _read_webhook_secret_file(settings: Settings, source: str) -> Settings:
    server = settings.server
    if server.webhook_secret_file is None:
        return settings
    key = "server.webhook_secret_file"
    if server.webhook_secret is not None:
        raise ConfigError(f"set {WEBHOOK_SECRET_ENV} or webhook_secret_file, not both",
                          source=source, key=key)
    value = read_secret_file(server.webhook_secret_file, what="the webhook secret",
                             source=source, key=key)
    secret = server.model_copy(update={"webhook_secret": Secret(value)})
    return settings.model_copy(update={"server": secret})


def _check_threads(settings: Settings, source: str) -> None:
    for key, what in (("threads", "thread id"), ("assistants", "assistant id"),
                      ("sessions", "session id"), ("agents", "agent id")):
        for index, object_id in enumerate(getattr(settings.watch, key)):
            if not is_valid_id(object_id):
                problem = InvalidId(what, object_id, max_chars=MAX_ID_CHARS)
                raise ConfigError(str(problem), source=source, key=f"watch.{key}[{index}]")


def _check_redis_urls(settings: Settings, source: str) -> None:
    for key, url in (("coordination.redis_url", settings.coordination.redis_url),
                     ("intake.redis_url", settings.intake.redis_url)):
        try:
            parse_redis_url(url, key=key)
        except ConfigError as exc:
            raise ConfigError(str(exc).removeprefix(f"{key}: "), source=source, key=key) from None


def missing_base_url(api: ApiSettings) -> str:
    """The choices of address, for a config that names none."""
    if api.backend == "azure":
        return ("no base_url: set it to the Foundry project endpoint, "
                "https://<resource>.services.ai.azure.com/api/projects/<project>")
    return ("no base_url: OpenAI's Assistants API is retired; set base_url to a compatible "
            "server or gateway (`tool-worker simulate` serves http://127.0.0.1:8080/v1), or use "
            "backend = \"azure\" with a Foundry project endpoint, or backend = \"agents\" for "
            "the OpenAI Agents API (its base_url defaults to https://api.openai.com/v1)")


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
    agents = settings.api.backend == "agents"
    for key, wrong in (("sessions", not agents), ("threads", agents)):
        if getattr(settings.watch, key) and wrong:
            raise ConfigError(
                "[watch] sessions are followed with backend = \"agents\" (the Agents API), "
                "[watch] threads with the other backends (threads and runs)",
                source=source, key=f"watch.{key}")
    if settings.watch.discover and settings.api.backend == "openai":
        raise ConfigError(
            "the OpenAI API cannot list threads, so discover needs backend = \"azure\" "
            "(threads) or \"agents\" (sessions); name the threads in [watch] threads instead",
            source=source,
            key="watch.discover",
        )
    if settings.approvals.rules and settings.api.backend == "openai":
        raise ConfigError(
            "only Azure's agents service and the Agents API ask for tool approvals, so "
            "[approvals] rules need backend = \"azure\" or \"agents\"; remove them for the "
            "Assistants API",
            source=source,
            key="approvals.rules",
        )


def _config_error(
    exc: ValidationError, source: str, from_env: Mapping[tuple[str, str], str]
) -> ConfigError:
    """The first problem, blamed on the variable that set the key when one did."""
    first = exc.errors()[0]
    location = first["loc"]
    key = ".".join(str(part) for part in location)
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = f"unknown key{_did_you_mean(location)}; `{EXAMPLE_COMMAND}` prints every key"
    elif first["type"] in ("tuple_type", "list_type"):
        message = "should be a list, like [\"a\", \"b\"]"
    elif "tuple" in message:
        message = message.replace("tuple", "list")
    variable = from_env.get((str(location[0]), str(location[1]))) if len(location) > 1 else None
    if variable is None and location:
        variable = next((name for (section, _), name in from_env.items()
                         if section == location[0]), None) if len(location) == 1 else None
    return ConfigError(message, source=variable or source, key=key)


def _did_you_mean(location: tuple[int | str, ...]) -> str:
    """`` (did you mean 'threads'?)`` for the known key nearest a mistyped one, if any is near."""
    model: Any = Settings
    for part in location[:-1]:
        if isinstance(part, int):
            continue  # an item of a list of sections: the item's type was taken below
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        model = field.annotation
        args = [arg for arg in typing.get_args(model) if isinstance(arg, type)]
        model = args[0] if args else model
    names = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(location[-1]), names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""

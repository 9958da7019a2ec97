"""configure_logging(): one structlog processor chain, secret redaction, JSON or console output.

Redaction runs after tracebacks are formatted, so a key inside an exception's text is caught
too, and once more over the rendered line: nothing reaches stderr unredacted.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from collections.abc import Iterable, MutableMapping

    from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["configure_logging", "redact_secrets", "redact_text"]

_SECRET_KEYS = frozenset({"api_key", "authorization", "password", "token", "secret", "api-key"})
# Shapes of secrets, wherever they hide inside a message: bearer tokens, OpenAI-style keys,
# Azure keys (32 hex digits on their own), and the password in a URL such as redis://:pw@host.
_SHAPES = re.compile(
    r"(?i)(bearer\s+)[^\s'\"]+"
    r"|\bsk-[A-Za-z0-9_\-]{6,}"
    r"|(?<![A-Za-z0-9_\-])[0-9a-f]{32}(?![A-Za-z0-9_\-])"
    r"|(\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+(@)"
)
# Values shorter than this are not hunted for literally: "a" would blank out every line.
_MIN_LITERAL_CHARS = 6
# Ids (thread_id, request_id...) may be bare hex: only configured literals are taken out.
_ID_SUFFIX = "_id"

_literals: re.Pattern[str] | None = None


def _shape(match: re.Match[str]) -> str:
    if match.group(2) is not None:  # user:password@ in a URL: keep the user and the host
        return f"{match.group(2)}***{match.group(3)}"
    return (match.group(1) or "") + "***"


def redact_text(text: str) -> str:
    """``text`` with every configured secret and every secret-shaped string as ``***``."""
    if _literals is not None:
        text = _literals.sub("***", text)
    return _SHAPES.sub(_shape, text)


def _redact_literals(text: str) -> str:
    return text if _literals is None else _literals.sub("***", text)


def _redact(value: Any, *, shapes: bool = True) -> Any:
    if isinstance(value, str):
        return redact_text(value) if shapes else _redact_literals(value)
    if isinstance(value, dict):
        return {
            key: "***" if str(key).lower() in _SECRET_KEYS
            else _redact(item, shapes=not str(key).endswith(_ID_SUFFIX))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact(item) for item in value)
    return value


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> EventDict:
    """Replace API keys, tokens and passwords with ``***`` in every field of the event."""
    redacted: dict[str, Any] = _redact(dict(event_dict))
    return redacted


class _RedactedOutput:
    """Wraps the renderer: configured secrets are taken out of the rendered line once more.

    Only the literals: the fields were redacted already, and shapes would hit bare-hex ids.
    """

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> Any:
        rendered = self._renderer(logger, method, event_dict)
        return _redact_literals(rendered) if isinstance(rendered, str) else rendered


def _set_secrets(secrets: Iterable[str]) -> None:
    global _literals
    values = sorted({s for s in secrets if len(s) >= _MIN_LITERAL_CHARS}, key=len, reverse=True)
    _literals = re.compile("|".join(map(re.escape, values))) if values else None


def configure_logging(
    *, json: bool | None = None, level: str = "info", secrets: Iterable[str] = ()
) -> None:
    """Install the processor chain; ``json=None`` picks console output on a terminal.

    Args:
        secrets: literal values never to write (the API key, the watch token, Redis
            passwords: ``Settings.secret_values()``), besides the shapes always redacted.
            They also apply to ``redact_text``, which error outputs for the model go through.
    """
    _set_secrets(secrets)
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        # plain_traceback: the traceback is already text (format_exc_info), redacted.
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                           exception_formatter=structlog.dev.plain_traceback)
    )
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
        _RedactedOutput(renderer),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )

"""configure_logging(): one structlog processor chain, secret redaction, JSON or console output."""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from structlog.typing import EventDict, Processor

__all__ = ["configure_logging", "redact_secrets"]

_SECRET_KEYS = frozenset({"api_key", "authorization", "password", "token", "secret", "api-key"})
# Bearer tokens and OpenAI-style keys, wherever they hide inside a message.
_SECRET_PATTERN = re.compile(r"(?i)(bearer\s+)[^\s'\"]+|\bsk-[A-Za-z0-9_\-]{6,}")


def _redact_text(text: str) -> str:
    return _SECRET_PATTERN.sub(lambda m: (m.group(1) or "") + "***", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {
            key: "***" if str(key).lower() in _SECRET_KEYS else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact(item) for item in value)
    return value


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> EventDict:
    """Replace API keys and bearer tokens with ``***`` in every field of the event."""
    return {
        key: "***" if key.lower() in _SECRET_KEYS else _redact(value)
        for key, value in event_dict.items()
    }


def configure_logging(*, json: bool | None = None, level: str = "info") -> None:
    """Install the processor chain; ``json=None`` picks console output on a terminal."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )

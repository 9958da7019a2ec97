"""configure_logging(): one structlog processor chain, secret redaction, JSON or console output.

Redaction runs after tracebacks are formatted, so a key inside an exception's text is caught
too, and once more over the rendered line: nothing reaches stderr unredacted.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import structlog

from worker.observability.redaction import redact_literals, redact_text, remember_secrets

if TYPE_CHECKING:
    from collections.abc import Iterable, MutableMapping

    from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["configure_logging", "redact_secrets", "redact_text"]

_SECRET_KEYS = frozenset({"api_key", "authorization", "password", "token", "secret", "api-key"})
# Ids (thread_id, request_id...) may be bare hex: only configured literals are taken out.
_ID_SUFFIX = "_id"


def _redact(value: Any, *, shapes: bool = True) -> Any:
    if isinstance(value, str):
        return redact_text(value) if shapes else redact_literals(value)
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
        return redact_literals(rendered) if isinstance(rendered, str) else rendered


def configure_logging(
    *, json: bool | None = None, level: str = "info", secrets: Iterable[str] = ()
) -> None:
    """Install the processor chain; ``json=None`` picks console output on a terminal.

    Args:
        secrets: literal values never to write besides every ``Secret`` (which
            ``worker.observability.redaction`` knows already) and the shapes always redacted.
            They also apply to ``redact_text``, which every other channel goes through.
    """
    remember_secrets(secrets)
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

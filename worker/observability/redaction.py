"""The one redaction of everything that leaves the process: logs, exit messages, /readyz,
/status, tool outputs.

Two nets: the literal value of every configured secret (each ``Secret`` made, plus any
``remember_secrets`` is told of), taken out exactly, wherever it is; and the shapes of
secrets (bearer tokens, ``sk-`` keys, Azure's 32-hex keys, JWTs, a URL's password), for keys
the worker was never told of, such as one an API echoes from another tenant.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from worker.config.secret import known_secrets

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["redact_literals", "redact_text", "remember_secrets"]

# Shapes of secrets, wherever they hide inside a message: bearer tokens, OpenAI-style keys,
# Azure keys (32 hex digits on their own), JWTs (Entra ID tokens), and the password in a URL
# such as redis://:pw@host. An sk- key counts after "_" or punctuation; glued to a letter or
# digit ("xsk-..."), only when it looks random (20+ characters with a digit and a capital), so
# that words like "risk-assessment" stay.
_SHAPES = re.compile(
    r"(?i)(bearer\s+)[^\s'\"]+"
    r"|(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{6,}"
    r"|(?-i:sk-(?=[A-Za-z0-9_\-]*[0-9])(?=[A-Za-z0-9_\-]*[A-Z])[A-Za-z0-9_\-]{20,})"
    r"|(?<![A-Za-z0-9_\-])[0-9a-f]{32}(?![A-Za-z0-9_\-])"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"
    r"|(\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+(@)"
)
# Values shorter than this are not hunted for literally: "a" would blank out every line.
MIN_LITERAL_CHARS = 6

_extra: frozenset[str] = frozenset()
# (known secrets, extra secrets) the pattern was compiled for, and the pattern.
_compiled: tuple[object, object, re.Pattern[str] | None] = (None, None, None)


def remember_secrets(values: Iterable[str]) -> None:
    """Secrets that are not ``Secret`` values (given to ``configure_logging``); replaces the
    ones given before."""
    global _extra
    _extra = frozenset(values)


def _literals() -> re.Pattern[str] | None:
    global _compiled
    known, extra = known_secrets(), _extra
    if known is not _compiled[0] or extra is not _compiled[1]:
        # Longest first: a secret that contains another is taken out whole.
        values = sorted({s for s in known | extra if len(s) >= MIN_LITERAL_CHARS}, key=len,
                        reverse=True)
        pattern = re.compile("|".join(map(re.escape, values))) if values else None
        _compiled = (known, extra, pattern)
    return _compiled[2]


def _shape(match: re.Match[str]) -> str:
    if match.group(2) is not None:  # user:password@ in a URL: keep the user and the host
        return f"{match.group(2)}***{match.group(3)}"
    return (match.group(1) or "") + "***"


def redact_literals(text: str) -> str:
    """``text`` without any configured secret (shapes left alone: bare-hex ids stay)."""
    literals = _literals()
    return text if literals is None else literals.sub("***", text)


def redact_text(text: str) -> str:
    """``text`` with every configured secret and every secret-shaped string as ``***``."""
    return _SHAPES.sub(_shape, redact_literals(text))

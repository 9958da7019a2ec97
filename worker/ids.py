"""Ids from outside (intake, config, API answers): what an Assistants API issues, and nothing else.

OpenAI issues ids like ``thread_abc123``; other servers use plain UUIDs or hex. Every one of
them fits 1-128 characters of letters, digits, ``_``, ``-``, ``.`` and ``:``, starting with a
letter or digit. An id outside that shape is refused before it gets near a URL, so ``..``,
``/``, ``?`` and ``&`` can never steer a request elsewhere. Path segments are still
percent-encoded when URLs are built (``path``): belt and braces, in one place.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from worker.errors import InvalidId

__all__ = ["MAX_ID_CHARS", "check_id", "is_valid_id", "path"]

MAX_ID_CHARS = 128
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")


def is_valid_id(value: object) -> bool:
    """True when ``value`` is a string shaped like an id the API issues."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(value: object, what: str = "id") -> str:
    """``value`` itself when it is a valid id.

    Raises:
        InvalidId: naming ``what`` (``thread_id``, ``run_id``...) and the shape expected.
    """
    if not is_valid_id(value):
        raise InvalidId(what, value, max_chars=MAX_ID_CHARS)
    assert isinstance(value, str)  # noqa: S101 - is_valid_id checked the type
    return value


def path(template: str, **ids: str) -> str:
    """A request path with each id checked and percent-encoded as one segment.

    ``path("/threads/{thread_id}/runs", thread_id="thread_a")`` -> ``/threads/thread_a/runs``.

    Raises:
        InvalidId: an id that must never reach a URL.
    """
    return template.format(
        **{name: quote(check_id(value, name), safe="") for name, value in ids.items()}
    )

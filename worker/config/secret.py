"""Secret: a value that never shows itself in ``repr``, ``str``, logs or error messages.

Every Secret made is remembered (``known_secrets``), so that the one redaction of every channel
that leaves the process (``worker.observability.redaction``) knows each configured secret,
the API key, the watch token, Redis passwords and any secret added later, without a list of
them to keep up to date.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic_core import core_schema

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler

__all__ = ["Secret", "forget_known_secrets", "known_secrets"]

# Replaced, never changed in place: readers compare it by identity to see that it grew.
_known: frozenset[str] = frozenset()


def known_secrets() -> frozenset[str]:
    """The value of every Secret made in this process (the same object until one is added)."""
    return _known


def forget_known_secrets() -> None:
    """Forget every Secret made so far: for tests, whose secrets must not leak into the next."""
    global _known
    _known = frozenset()


class Secret:
    """A value that never shows itself in ``repr``, ``str``, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        _remember(value)

    def get(self) -> str:
        """The value itself: hand it only to what sends it (a header, a connection)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # A settings field typed Secret takes a string and keeps it wrapped; dumped, it is '***'.
        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def _validate(cls, value: object) -> Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, str) and value:
            if any(ch.isspace() or not ch.isprintable() for ch in value.strip()):
                # Said without the value: it is a secret, and it would break a header.
                raise ValueError("must be one line holding only the value: it holds a line "
                                 "break, a space or a control character inside")
            return cls(value.strip())
        raise ValueError("must be a non-empty string")


def _remember(value: str) -> None:
    global _known
    if value not in _known:
        _known = _known | {value}

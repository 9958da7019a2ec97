"""The error of a ``@tool`` or ``@resource`` that cannot be served as written."""

from __future__ import annotations

__all__ = ["SUPPORTED_TYPES", "DefinitionError"]

# Said in every message about a parameter's type, so its author sees the choices at once.
SUPPORTED_TYPES = (
    "str, int, float, bool, None, Literal[...], an Enum, list/tuple/set of these, "
    "dict[str, ...], datetime/date/time, UUID, Decimal, a pydantic model, a dataclass or "
    "a TypedDict (and ToolContext or a declared @resource's type, which the worker passes)"
)


class DefinitionError(TypeError):
    """A handler's definition cannot be served; the message names the tool and what to change.

    Raised when ``@tool`` or ``@resource`` decorates the function, that is when its module is
    imported; the worker reports it as a problem of the handler, not of the import.
    """

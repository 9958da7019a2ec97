"""Type hints -> an argument validator and a JSON schema (pure functions, no I/O)."""

from __future__ import annotations

import inspect
import json
import typing
from dataclasses import dataclass
from typing import Any

import pydantic

from .context import ToolContext
from .errors import ToolArgumentsError

__all__ = ["Signature", "read_signature"]


@dataclass(frozen=True, slots=True)
class Signature:
    """What a handler takes: a pydantic model of its arguments and where the context goes."""

    tool: str
    model: type[pydantic.BaseModel]
    context_param: str | None

    def parse(self, arguments: str) -> dict[str, Any]:
        """Turn the model's raw JSON text into validated keyword arguments.

        Raises:
            ToolArgumentsError: the text is not a JSON object or does not fit the hints.
        """
        try:
            raw = json.loads(arguments, parse_constant=_reject_constant) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolArgumentsError(self.tool, f"not valid JSON ({exc.msg} at {exc.pos})") from None
        except (ValueError, RecursionError) as exc:
            raise ToolArgumentsError(self.tool, f"not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ToolArgumentsError(self.tool, "expected a JSON object of named arguments")
        try:
            validated = self.model.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise ToolArgumentsError(self.tool, _describe(exc)) from None
        return {name: getattr(validated, name) for name in type(validated).model_fields}

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the parameters, as the Assistants ``function.parameters`` takes it."""
        schema = self.model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema


def read_signature(fn: typing.Callable[..., Any], tool: str) -> Signature:
    """Read a handler's parameters; a parameter annotated ``ToolContext`` receives the context."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    context_param = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(f"tool {tool!r}: parameter {param.name!r} must be a named parameter")
        annotation = hints.get(param.name, Any)
        if annotation is ToolContext:
            context_param = param.name
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    model = pydantic.create_model(
        f"{tool}_arguments",
        __config__=pydantic.ConfigDict(extra="forbid"),
        **fields,
    )
    return Signature(tool=tool, model=model, context_param=context_param)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and no handler expects them.
    raise ValueError(f"{name} is not a JSON value")


def _describe(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unexpected argument"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)

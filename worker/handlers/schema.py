"""Type hints and docstring -> an argument validator and a JSON schema (pure functions, no I/O)."""

from __future__ import annotations

import inspect
import itertools
import json
import typing
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic
from pydantic.errors import PydanticInvalidForJsonSchema
from pydantic.fields import FieldInfo

from worker.errors import ToolArgumentsError
from worker.handlers.context import ToolContext
from worker.handlers.definition import SUPPORTED_TYPES, DefinitionError
from worker.handlers.docstrings import parse_docstring
from worker.handlers.resources import declared_resource
from worker.handlers.strict import NotStrict, Schema, fill_defaults, strip_titles, to_strict

__all__ = ["Signature", "read_signature"]


@dataclass(frozen=True, slots=True)
class Signature:
    """What a handler takes: a model of its arguments, its JSON schema, and where the context goes.

    ``parameters`` is the schema as the API takes it: strict-mode form when ``strict``, else
    pydantic's own; ``strict_problem`` says why a schema could not be strict.
    """

    tool: str
    model: type[pydantic.BaseModel]
    context_param: str | None
    schema: Schema
    parameters: Schema
    strict: bool
    strict_problem: str | None = None
    # (parameter, type) of each declared @resource the handler takes; never model arguments.
    resources: tuple[tuple[str, type[Any]], ...] = ()

    def parse(self, arguments: str) -> dict[str, Any]:
        """Turn the model's raw JSON text into validated keyword arguments.

        A null for a parameter that has a default and does not take null means the default,
        as strict mode sends it.

        Raises:
            ToolArgumentsError: the text is not a JSON object or does not fit the hints.
        """
        try:
            raw = (
                json.loads(arguments, parse_constant=_reject_constant)
                if arguments not in _NO_ARGUMENTS and arguments.strip()
                else {}
            )
            if isinstance(raw, dict):
                self._refuse_surplus(raw)
                raw = fill_defaults(raw, self.schema, self.schema.get("$defs", {}))
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


    def _refuse_surplus(self, raw: dict[str, Any]) -> None:
        """Far more keys than parameters: refused before validation, which would build one
        error per key (80,000 keys took 0.2 s of CPU). A few extra keys are left to it, so
        that its message also names what is missing."""
        fields = self.model.model_fields
        if len(raw) > len(fields) + _SURPLUS_SHOWN:
            unknown = [key for key in itertools.islice(raw, len(fields) + _SURPLUS_SHOWN)
                       if key not in fields][:_SURPLUS_SHOWN]
            named = "; ".join(f"{key[:40]}: unexpected argument" for key in unknown)
            raise ToolArgumentsError(self.tool, f"{named}; and more: {len(raw)} arguments "
                                                f"given, it takes {len(fields)}")


# Unexpected arguments named in the message when there are too many to validate.
_SURPLUS_SHOWN = 5


def _arguments_model(
    tool: str, fields: dict[str, Any]
) -> tuple[type[pydantic.BaseModel], Schema]:
    """The model that validates the arguments, and its JSON schema.

    Raises:
        DefinitionError: a parameter's type has no JSON form; names the parameter.
    """
    try:
        model = pydantic.create_model(
            f"{tool}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid"),
            **fields,
        )
        return model, model.model_json_schema()
    except (pydantic.PydanticSchemaGenerationError, PydanticInvalidForJsonSchema):
        raise _unsupported(tool, fields) from None


def _unsupported(tool: str, fields: dict[str, Any]) -> DefinitionError:
    """The error naming the first parameter whose type the model cannot send as JSON."""
    for name, (annotation, _default) in fields.items():
        try:
            pydantic.TypeAdapter(annotation).json_schema()
        except (pydantic.PydanticSchemaGenerationError, PydanticInvalidForJsonSchema):
            return DefinitionError(
                f"tool {tool!r}: parameter {name!r} has type {_type_name(annotation)}, which "
                f"the model cannot send as JSON; use one of: {SUPPORTED_TYPES}. If it is a "
                "@resource, import the module that declares it before this one")
    return DefinitionError(f"tool {tool!r}: the parameters have no JSON schema; use one of: "
                           f"{SUPPORTED_TYPES}")


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "").replace("collections.abc.", "")


def read_signature(fn: typing.Callable[..., Any], tool: str) -> Signature:
    """Read a handler's parameters; a parameter annotated ``ToolContext`` receives the context,
    one annotated with a declared ``@resource``'s type receives the resource.

    A parameter's description comes from its ``Field(description=...)``, or else from the
    docstring's ``Args:`` section.
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    documented = parse_docstring(fn.__doc__).params
    fields: dict[str, Any] = {}
    context_param = None
    resources: list[tuple[str, type[Any]]] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise DefinitionError(f"tool {tool!r}: parameter {param.name!r} must be a named "
                                  "parameter")
        annotation = hints.get(param.name, Any)
        if annotation is ToolContext:
            context_param = param.name
            continue
        found = declared_resource(annotation)
        if found is not None:
            resources.append((param.name, found.provides))
            continue
        default = ... if param.default is param.empty else param.default
        description = documented.get(param.name)
        if description and not _has_description(annotation, default):
            annotation = Annotated[annotation, pydantic.Field(description=description)]
        fields[param.name] = (annotation, default)
    model, schema = _arguments_model(tool, fields)
    try:
        parameters, strict, problem = to_strict(schema), True, None
    except NotStrict as exc:
        parameters, strict, problem = strip_titles(schema), False, str(exc)
    return Signature(tool, model, context_param, schema, parameters, strict, problem,
                     tuple(resources))


def _has_description(annotation: Any, default: Any) -> bool:
    infos = [default] if isinstance(default, FieldInfo) else []
    if typing.get_origin(annotation) is Annotated:
        infos += [item for item in annotation.__metadata__ if isinstance(item, FieldInfo)]
    return any(info.description for info in infos)


_NO_ARGUMENTS = frozenset({"", "{}"})  # the commonest arguments of all; no parser needed


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

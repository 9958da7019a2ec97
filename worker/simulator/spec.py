"""Request bodies checked against the official OpenAPI document, refused as the API refuses.

Opt-in (`Simulator(spec=path)`): the document is a data file outside the package, and
`jsonschema` is a development dependency, imported only when a document is given.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.simulator.wire import RequestRefused, invalid_type, refuse

if TYPE_CHECKING:
    from collections.abc import Mapping

    from jsonschema import ValidationError

__all__ = ["RequestSchemas", "nullable_to_json_schema"]

_URI = "urn:simulator-openapi"
_TYPE_NAMES = {
    "string": "a string", "integer": "an integer", "number": "a decimal", "boolean": "a boolean",
    "array": "an array", "object": "an object", "null": "null",
}


def nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` (which this 3.1 document still uses) as JSON Schema."""
    if isinstance(node, list):
        return [nullable_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    all_of = node.get("allOf")
    nullable = node.pop("nullable", False)
    if isinstance(all_of, list) and {"nullable": True} in all_of:
        # `allOf: [{$ref}, {nullable: true}]` means "the ref, or null".
        node["allOf"] = [item for item in all_of if item != {"nullable": True}]
        nullable = True
    converted = {key: nullable_to_json_schema(value) for key, value in node.items()}
    return {"anyOf": [converted, {"type": "null"}]} if nullable else converted


class RequestSchemas:
    """A validator for the request body of each operation, found by method and path template."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        converted = nullable_to_json_schema(document)
        resource = Resource.from_contents(converted, default_specification=DRAFT202012)
        registry: Registry[Any] = Registry().with_resource(_URI, resource)
        self._validators: dict[tuple[str, str], Draft202012Validator] = {}
        # The query parameters of each operation, each with a validator of its values.
        self._queries: dict[tuple[str, str], dict[str, Draft202012Validator]] = {}
        for path, item in converted["paths"].items():
            for method, operation in item.items():
                if not isinstance(operation, dict):
                    continue
                key = (method.upper(), path)
                content = operation.get("requestBody", {}).get("content", {})
                ref = content.get("application/json", {}).get("schema", {}).get("$ref")
                if ref is not None:
                    schema = {"$ref": f"{_URI}{ref}"}
                    self._validators[key] = Draft202012Validator(schema, registry=registry)
                self._queries[key] = {
                    param["name"]: Draft202012Validator(param.get("schema", {}))
                    for param in operation.get("parameters", ())
                    if param.get("in") == "query"
                }

    @classmethod
    def from_path(cls, path: str | Path) -> RequestSchemas:
        """Load the OpenAPI document (JSON) at `path`."""
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def check(self, method: str, path_template: str, body: object) -> None:
        """Refuse `body` with the API's 400 unless it matches the operation's request schema."""
        validator = self._validators.get((method.upper(), path_template))
        if validator is None:
            return
        from jsonschema.exceptions import best_match

        found = best_match(validator.iter_errors(body))
        if found is not None:
            raise _refusal(found)


    def check_query(
        self, method: str, path_template: str, query: Mapping[str, list[str]]
    ) -> None:
        """Refuse an unknown query parameter, or a value its schema does not allow."""
        known = self._queries.get((method.upper(), path_template))
        if known is None:
            return
        for name, values in query.items():
            validator = known.get(name)
            if validator is None:
                raise refuse(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
            kind = validator.schema.get("type") if isinstance(validator.schema, dict) else None
            value: object = values if kind == "array" else values[-1]
            if kind == "integer":
                value = _integer(values[-1])
            if not validator.is_valid(value):
                raise refuse(f"Invalid value for '{name}': {values[-1]!r}.", param=name,
                             code="invalid_value")


def _integer(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _param(error: ValidationError) -> str:
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _refusal(error: ValidationError) -> RequestRefused:
    param = _param(error)
    where = f"{param}." if param else ""
    instance, expected = error.instance, error.validator_value
    if error.validator == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(_TYPE_NAMES.get(str(kind), str(kind)) for kind in kinds)
        return invalid_type(param or "body", wanted, instance)
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        name = next((key for key in instance if key not in known), "")
        return refuse(f"Unknown parameter: '{where}{name}'.", param=f"{where}{name}",
                      code="unknown_parameter")
    if error.validator == "required" and isinstance(instance, dict):
        required = expected if isinstance(expected, list) else []
        name = next((key for key in required if key not in instance), "")
        return refuse(f"Missing required parameter: '{where}{name}'.", param=f"{where}{name}",
                      code="missing_required_parameter")
    message = re.sub(r"\s+", " ", error.message)[:300]
    return refuse(f"Invalid '{param or 'body'}': {message}", param=param or None,
                  code="invalid_value")

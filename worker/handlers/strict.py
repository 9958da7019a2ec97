"""Strict mode: the API's subset of JSON schema, and the nulls that stand for defaults in it.

In strict mode (OpenAI structured outputs) every object lists all of its properties in
``required`` and forbids any other, so a parameter with a default becomes "this type or null".
The model sends null to mean "the default"; ``fill_defaults`` turns such a null back into an
absent key before validation, so pydantic applies the default.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["NotStrict", "Schema", "accepts_null", "fill_defaults", "strip_titles", "to_strict"]

Schema = dict[str, Any]

# Keywords strict mode takes as they are.
_KEPT = frozenset({
    "type", "description", "enum", "const", "pattern", "multipleOf", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "minItems", "maxItems",
})
_FORMATS = frozenset({
    "date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid",
})
# Keywords strict mode refuses but the validator still checks: the description says them.
_HINTS: dict[str, Callable[[Any], str]] = {
    # A null default needs no word: the schema takes null anyway.
    "default": lambda value: "" if value is None else f"default: {json.dumps(value)}",
    "minLength": lambda n: f"at least {n} character{'s' * (n != 1)}",
    "maxLength": lambda n: f"at most {n} character{'s' * (n != 1)}",
    "uniqueItems": lambda unique: "no repeated items" if unique else "",
}
# Annotations for people, or pydantic's own bookkeeping; the model does not need them.
_DROPPED = frozenset({"title", "examples", "discriminator", "format"})
_STRUCTURE = frozenset({
    "properties", "required", "additionalProperties", "items", "anyOf", "oneOf", "allOf", "$defs",
})
_WHY_NOT = {
    "prefixItems": "is a fixed-length tuple; use list[...] or a model",
    "patternProperties": "has keys matched by pattern; use a model with named fields",
    "not": "uses 'not'",
}
_MAX_REFS = 64


class NotStrict(Exception):
    """The schema has no strict form; the message says which part and why."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"'{where}' {problem}")


def to_strict(schema: Schema) -> Schema:
    """A strict-mode copy of a pydantic parameters schema.

    Raises:
        NotStrict: some part (a dict, ``Any``, a tuple, ...) has no strict form.
    """
    return _Converter(schema.get("$defs", {})).convert(schema)


def strip_titles(schema: Schema) -> Schema:
    """A copy without pydantic's ``title`` keywords (properties named "title" are kept)."""
    out: Schema = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: strip_titles(sub) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            out[key] = [strip_titles(sub) for sub in value]
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = strip_titles(value)
        else:
            out[key] = value
    return out


def accepts_null(schema: Schema, defs: Schema, _depth: int = 0) -> bool:
    """Whether ``null`` is a valid value of ``schema`` (a schema without constraints takes it)."""
    if _depth > _MAX_REFS:
        return False
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if ("const" in schema and schema["const"] is None) or None in schema.get("enum", ()):
        return True
    branches = [*schema.get("anyOf", ()), *schema.get("oneOf", ()), *schema.get("allOf", ())]
    if any(accepts_null(branch, defs, _depth + 1) for branch in branches):
        return True
    if "$ref" in schema:
        return accepts_null(_resolve(schema["$ref"], defs), defs, _depth + 1)
    constraining = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "properties", "items"}
    return not constraining & schema.keys()


def fill_defaults(value: Any, schema: Schema, defs: Schema) -> Any:
    """``value`` with each null dropped where the property has a default and does not take null."""
    node = _deref(schema, defs)
    if isinstance(value, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            return _fill_object(value, properties, set(node.get("required", ())), defs)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return {key: fill_defaults(item, extra, defs) for key, item in value.items()}
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        return [fill_defaults(item, node["items"], defs) for item in value]
    branch = _branch(value, node, defs)
    return value if branch is None else fill_defaults(value, branch, defs)


def _fill_object(
    value: dict[str, Any], properties: Schema, required: set[str], defs: Schema
) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        prop = properties.get(key)
        if prop is None:
            out[key] = item  # unexpected: the validator says so
        elif item is None and key not in required and not accepts_null(prop, defs):
            continue  # absent: the default applies
        else:
            out[key] = fill_defaults(item, prop, defs)
    return out


def _branch(value: Any, node: Schema, defs: Schema) -> Schema | None:
    """The one branch of a union that a container value can belong to, if there is one."""
    branches = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
    if not isinstance(branches, list) or not isinstance(value, dict | list):
        return None
    tag = node.get("discriminator")
    if isinstance(value, dict) and isinstance(tag, dict):
        ref = (tag.get("mapping") or {}).get(value.get(tag.get("propertyName", "")))
        if isinstance(ref, str):
            return {"$ref": ref}
    fitting = [branch for branch in branches if _fits(value, _deref(branch, defs))]
    return fitting[0] if len(fitting) == 1 else None


def _fits(value: dict[str, Any] | list[Any], node: Schema) -> bool:
    if isinstance(value, dict):
        return _is_object(node)
    return node.get("type") == "array" or "items" in node


def _is_object(node: Schema) -> bool:
    return node.get("type") == "object" or "properties" in node


def _resolve(ref: str, defs: Schema) -> Schema:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix):] not in defs:
        raise NotStrict(ref, "is not a reference into $defs")
    resolved: Schema = defs[ref[len(prefix):]]
    return resolved


def _deref(node: Schema, defs: Schema) -> Schema:
    for _ in range(_MAX_REFS):
        ref = node.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            return node
        node = defs.get(ref[len("#/$defs/"):], {})
    return node


class _Converter:
    """One pass over a schema and its ``$defs``, building the strict copy."""

    def __init__(self, defs: Schema) -> None:
        self._defs = defs
        self._inlining: list[str] = []

    def convert(self, root: Schema) -> Schema:
        out = self._node(root, "the parameters")
        defs = {name: self._node(sub, name) for name, sub in self._defs.items()}
        # Definitions that were copied in beside their reference may be used nowhere now.
        used: set[str] = set()
        pending = _refs(out)
        while pending:
            name = pending.pop()
            if name not in used:
                used.add(name)
                pending |= _refs(defs[name])
        if used:
            out["$defs"] = {name: sub for name, sub in defs.items() if name in used}
        return out

    def _node(self, schema: Schema, where: str) -> Schema:
        schema = self._merge_all_of(schema, where)
        if "$ref" in schema:
            return self._ref(schema, where)
        out: Schema = {}
        hints: list[str] = []
        for key, value in schema.items():
            if key in _KEPT or (key == "format" and value in _FORMATS):
                out[key] = value
            elif key in _HINTS:
                hints.append(_HINTS[key](value))
            elif key not in _DROPPED and key not in _STRUCTURE:
                raise NotStrict(where, _WHY_NOT.get(key, f"uses '{key}', which strict mode lacks"))
        if _is_object(schema):
            self._object(schema, out, where)
        if isinstance(schema.get("items"), dict):
            out["items"] = self._node(schema["items"], f"{where}[]")
        branches = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(branches, list):
            self._check_union(schema, branches, where)
            out["anyOf"] = [self._node(branch, where) for branch in branches]
        if not {"type", "enum", "const", "anyOf"} & out.keys():
            raise NotStrict(where, "takes any value; give it a type")
        return _with_hints(out, hints)

    def _ref(self, schema: Schema, where: str) -> Schema:
        ref = schema["$ref"]
        _resolve(ref, self._defs)
        name = ref.rsplit("/", 1)[-1]
        if len(schema) == 1 or name in self._inlining:
            return {"$ref": ref}  # a recursive reference keeps no siblings
        # Strict mode takes no siblings beside $ref ("description" of a model-typed
        # parameter, say), so the referenced schema is copied in with them.
        self._inlining.append(name)
        try:
            merged = {**self._defs[name], **{k: v for k, v in schema.items() if k != "$ref"}}
            return self._node(merged, where)
        finally:
            self._inlining.pop()

    def _merge_all_of(self, schema: Schema, where: str) -> Schema:
        parts = schema.get("allOf")
        if parts is None:
            return schema
        if not isinstance(parts, list) or len(parts) != 1:
            raise NotStrict(where, "combines schemas with allOf")
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return {**parts[0], **rest}

    def _object(self, schema: Schema, out: Schema, where: str) -> None:
        extra = schema.get("additionalProperties")
        properties = schema.get("properties")
        if extra not in (None, False) or not isinstance(properties, dict):
            raise NotStrict(where, "is a dict with open keys; use a pydantic model with named fields")
        required = set(schema.get("required", ()))
        converted = {}
        for name, prop in properties.items():
            sub = self._node(prop, name if where == "the parameters" else f"{where}.{name}")
            if name not in required and not accepts_null(prop, self._defs):
                sub = _nullable(sub)
            converted[name] = sub
        out.update(properties=converted, required=list(properties), additionalProperties=False)

    def _check_union(self, schema: Schema, branches: list[Schema], where: str) -> None:
        # fill_defaults must know which model a value is, to know which nulls mean defaults.
        models = [node for node in (_deref(b, self._defs) for b in branches) if _is_object(node)]
        optional = any(set(m.get("properties", {})) - set(m.get("required", ())) for m in models)
        if len(models) > 1 and optional and "discriminator" not in schema:
            raise NotStrict(where, "is a union of models with optional fields; tag them with "
                                   "Field(discriminator=...)")


def _nullable(schema: Schema) -> Schema:
    """``schema`` or null, with the description kept outside the union."""
    null: Schema = {"type": "null"}
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], null]}
    inner = {k: v for k, v in schema.items() if k != "description"}
    outer: Schema = {"anyOf": [inner, null]}
    if "description" in schema:
        outer["description"] = schema["description"]
    return outer


def _refs(node: object) -> set[str]:
    """The names of the definitions that ``node`` refers to, at any depth."""
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    if not isinstance(node, dict):
        return set()
    ref = node.get("$ref")
    found = {ref.rsplit("/", 1)[-1]} if isinstance(ref, str) else set()
    return found.union(*(_refs(value) for value in node.values()))


def _with_hints(out: Schema, hints: list[str]) -> Schema:
    hints = [hint for hint in hints if hint]
    if not hints:
        return out
    said = f"({'; '.join(hints)})"
    description = out.get("description")
    out["description"] = f"{description} {said}" if description else said
    return out

"""Schemas from code: each type shape, strict mode's rules, and null standing for a default."""

from __future__ import annotations

# The handlers' hints are evaluated at runtime, so their types are imported at runtime too.
import datetime as dt  # noqa: TC003
import enum
import json
from collections.abc import Callable  # noqa: TC003
from pathlib import Path  # noqa: TC003
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from worker import ToolArgumentsError
from worker.handlers.definition import SUPPORTED_TYPES, DefinitionError
from worker.handlers.schema import Signature, read_signature

# What strict mode (OpenAI structured outputs) accepts in a schema node.
STRICT_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "anyOf", "enum", "const",
    "description", "$ref", "$defs", "pattern", "format", "multipleOf", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "minItems", "maxItems",
}


def assert_strict_mode(node: Any, where: str = "parameters") -> None:
    """Every object closed with all properties required, only supported keywords, bare $refs."""
    assert isinstance(node, dict), where
    assert set(node) <= STRICT_KEYWORDS, f"{where}: {set(node) - STRICT_KEYWORDS}"
    if "$ref" in node:
        assert len(node) == 1, f"{where}: $ref with siblings"
    if node.get("type") == "object" or "properties" in node:
        assert node["additionalProperties"] is False, where
        assert node["required"] == list(node["properties"]), where
    for name, sub in node.get("properties", {}).items():
        assert_strict_mode(sub, f"{where}.{name}")
    for name, sub in node.get("$defs", {}).items():
        assert_strict_mode(sub, f"{where}.$defs.{name}")
    for index, sub in enumerate(node.get("anyOf", [])):
        assert_strict_mode(sub, f"{where}.anyOf[{index}]")
    if "items" in node:
        assert_strict_mode(node["items"], f"{where}[]")


def strict_signature(fn: Any) -> Signature:
    signature = read_signature(fn, fn.__name__)
    assert signature.strict, signature.strict_problem
    assert_strict_mode(signature.parameters)
    return signature


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    """A postal address."""

    street: str
    city: str
    postcode: str = Field("0000", max_length=10)


class Item(BaseModel):
    sku: str
    quantity: int = Field(1, ge=1)
    note: str | None = None


def order(address: Address, items: list[Item], gift: bool = False) -> None:
    """Place an order."""


def paint(color: Color, trim: Color = Color.BLUE) -> None:
    """Paint a wall."""


def weather(city: str, unit: Literal["c", "f"] = "c", days: int | None = None) -> None:
    """Forecast.

    Args:
        city: A city name,
            like 'Paris'.
        unit (str): Degrees Celsius or Fahrenheit.
        days: How many days ahead.
    """


def test_literal_is_an_enum_and_a_default_makes_it_nullable() -> None:
    """A Literal is an enum; with a default, strict mode takes it or null, and says the default."""
    unit = strict_signature(weather).parameters["properties"]["unit"]
    assert unit == {
        "anyOf": [{"enum": ["c", "f"], "type": "string"}, {"type": "null"}],
        "description": 'Degrees Celsius or Fahrenheit. (default: "c")',
    }


def test_docstring_args_describe_the_parameters() -> None:
    """Google-style Args entries become parameter descriptions, continuation lines joined."""
    properties = strict_signature(weather).parameters["properties"]
    assert properties["city"] == {"type": "string", "description": "A city name, like 'Paris'."}
    assert properties["days"]["description"] == "How many days ahead."


def test_a_field_description_wins_over_the_docstring() -> None:
    """Field(description=...) is kept when the docstring also describes the parameter."""

    def lookup(key: Annotated[str, Field(description="from the Field")]) -> None:
        """Look up.

        Args:
            key: from the docstring
        """

    properties = strict_signature(lookup).parameters["properties"]
    assert properties["key"]["description"] == "from the Field"


def test_an_optional_parameter_is_required_and_nullable_in_strict_mode() -> None:
    """``int | None = None`` stays a union with null, listed in required, without a default."""
    parameters = strict_signature(weather).parameters
    assert parameters["properties"]["days"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert parameters["required"] == ["city", "unit", "days"]


def test_enums_are_definitions_and_a_default_is_copied_in() -> None:
    """An enum parameter refers to its $defs entry; one with a default is copied in, or null."""
    parameters = strict_signature(paint).parameters
    assert parameters["$defs"] == {"Color": {"enum": ["red", "blue"], "type": "string"}}
    assert parameters["properties"]["color"] == {"$ref": "#/$defs/Color"}
    assert parameters["properties"]["trim"] == {
        "anyOf": [{"enum": ["red", "blue"], "type": "string"}, {"type": "null"}],
        "description": '(default: "blue")',
    }


def test_nested_models_are_closed_at_every_level() -> None:
    """Models in parameters and in lists are $defs whose every field is required."""
    parameters = strict_signature(order).parameters
    address = parameters["$defs"]["Address"]
    assert address["description"] == "A postal address."
    assert address["required"] == ["street", "city", "postcode"]
    assert address["properties"]["postcode"]["description"] == '(default: "0000"; at most 10 characters)'
    assert parameters["properties"]["items"] == {"type": "array", "items": {"$ref": "#/$defs/Item"}}


def test_a_described_model_parameter_is_copied_in_beside_its_description() -> None:
    """Strict mode takes no siblings beside $ref, so the model's schema is inlined."""

    def ship(to: Annotated[Address, Field(description="where it goes")]) -> None:
        """Ship."""

    parameters = strict_signature(ship).parameters
    assert parameters["properties"]["to"]["description"] == "where it goes"
    assert parameters["properties"]["to"]["required"] == ["street", "city", "postcode"]
    assert "$defs" not in parameters  # the definition is used nowhere else


class Node(BaseModel):
    name: str
    children: list[Node] = []


def test_a_recursive_model_refers_to_itself() -> None:
    """A model that contains itself stays a $ref, which strict mode allows."""

    def tree(root: Node) -> None:
        """Walk a tree."""

    parameters = strict_signature(tree).parameters
    children = parameters["$defs"]["Node"]["properties"]["children"]
    assert children["anyOf"][0] == {"type": "array", "items": {"$ref": "#/$defs/Node"}}


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool = True


def test_a_discriminated_union_is_strict_and_its_defaults_apply() -> None:
    """A tagged union becomes anyOf, and a null inside the chosen model means its default."""

    def adopt(pet: Annotated[Cat | Dog, Field(discriminator="kind")]) -> None:
        """Adopt."""

    signature = strict_signature(adopt)
    assert len(signature.parameters["properties"]["pet"]["anyOf"]) == 2
    assert signature.parse('{"pet": {"kind": "cat", "lives": null}}') == {"pet": Cat(kind="cat")}


def test_unsupported_keywords_are_dropped_and_described() -> None:
    """Lengths, unique items and unknown formats leave the schema; the description keeps them."""

    def tag(
        name: Annotated[str, Field(min_length=1, max_length=20)],
        labels: set[str],
        where: Path,
    ) -> None:
        """Tag."""

    properties = strict_signature(tag).parameters["properties"]
    assert properties["name"] == {
        "type": "string", "description": "(at most 20 characters; at least 1 character)"}
    assert properties["labels"]["description"] == "(no repeated items)"
    assert properties["where"] == {"type": "string"}


def test_supported_formats_and_bounds_are_kept() -> None:
    """date-time formats and numeric bounds are part of strict mode."""

    def remind(at: dt.datetime, times: Annotated[int, Field(ge=1, le=5)]) -> None:
        """Remind."""

    properties = strict_signature(remind).parameters["properties"]
    assert properties["at"] == {"type": "string", "format": "date-time"}
    assert properties["times"] == {"type": "integer", "minimum": 1, "maximum": 5}


class Square(BaseModel):
    side: float
    unit: str = "m"


class Circle(BaseModel):
    radius: float
    unit: str = "m"


def shapes_untagged(shape: Square | Circle) -> None:
    """Untagged."""


def opaque(options: dict[str, int]) -> None:
    """Open keys."""


def anything(value: Any = None) -> None:
    """Any value."""


def pair(point: tuple[int, int]) -> None:
    """A tuple."""


@pytest.mark.parametrize(
    ("fn", "problem"),
    [
        (opaque, "'options' is a dict with open keys"),
        (anything, "'value' takes any value"),
        (pair, "'point' is a fixed-length tuple"),
        (shapes_untagged, "'shape' is a union of models with optional fields"),
    ],
)
def test_shapes_without_a_strict_form_give_a_normal_schema(fn: Any, problem: str) -> None:
    """Open dicts, Any, tuples and untagged unions of models are sent without "strict"."""
    signature = read_signature(fn, fn.__name__)
    assert not signature.strict
    assert signature.strict_problem is not None
    assert signature.strict_problem.startswith(problem)
    assert "title" not in json.dumps(signature.parameters)
    assert signature.parameters["type"] == "object"


def test_a_normal_schema_keeps_defaults_and_optional_parameters() -> None:
    """Without strict mode, defaults stay as "default" and only required names are required."""

    def tune(options: dict[str, int], level: int = 3) -> None:
        """Tune."""

    parameters = read_signature(tune, "tune").parameters
    assert parameters["required"] == ["options"]
    assert parameters["properties"]["level"] == {"type": "integer", "default": 3}


SAMPLES: list[tuple[Any, dict[str, Any]]] = [
    (weather, {"city": "Oslo", "unit": None, "days": None}),
    (weather, {"city": "Oslo", "unit": "f", "days": 3}),
    (paint, {"color": "red", "trim": None}),
    (order, {"address": {"street": "1 Main St", "city": "Oslo", "postcode": None},
             "items": [{"sku": "a", "quantity": None, "note": None},
                       {"sku": "b", "quantity": 4, "note": "fragile"}],
             "gift": None}),
]


@pytest.mark.parametrize(("fn", "arguments"), SAMPLES)
def test_strict_schemas_validate_and_parse_sample_arguments(
    fn: Any, arguments: dict[str, Any]
) -> None:
    """Arguments a strict model would send pass jsonschema and the worker's own validation."""
    signature = strict_signature(fn)
    jsonschema.Draft202012Validator.check_schema(signature.parameters)
    jsonschema.Draft202012Validator(signature.parameters).validate(arguments)
    signature.parse(json.dumps(arguments))


def test_strict_schemas_refuse_missing_and_extra_properties() -> None:
    """Under the strict schema an omitted or unknown property is invalid."""
    validator = jsonschema.Draft202012Validator(strict_signature(weather).parameters)
    assert not validator.is_valid({"city": "Oslo", "unit": None})
    assert not validator.is_valid({"city": "Oslo", "unit": None, "days": None, "x": 1})


def test_null_means_the_default_when_the_type_takes_no_null() -> None:
    """A null for a defaulted parameter gives its default, at the top and inside models."""
    signature = strict_signature(order)
    kwargs = signature.parse(json.dumps(SAMPLES[3][1]))
    assert kwargs["gift"] is False
    assert kwargs["address"].postcode == "0000"
    assert [item.quantity for item in kwargs["items"]] == [1, 4]


def test_null_stays_null_where_the_type_takes_it() -> None:
    """``int | None = 5`` receives None for null, since None is one of its values."""

    def page(size: int | None = 5) -> None:
        """Page."""

    assert strict_signature(page).parse('{"size": null}') == {"size": None}


def test_null_for_a_required_parameter_is_still_invalid() -> None:
    """Without a default, null is a validation error that names the parameter."""
    with pytest.raises(ToolArgumentsError, match="city: Input should be a valid string"):
        strict_signature(weather).parse('{"city": null, "unit": null, "days": null}')


class _Opaque:
    """A class pydantic has no schema for."""


def test_an_unsupported_parameter_type_names_the_tool_the_parameter_and_the_choices() -> None:
    """The message names tool, parameter and type, lists what works and drops pydantic's advice."""
    def lookup(query: str, handle: _Opaque) -> str:
        return query

    with pytest.raises(DefinitionError) as caught:
        read_signature(lookup, "lookup")
    message = str(caught.value)
    assert message.startswith("tool 'lookup': parameter 'handle' has type _Opaque")
    assert SUPPORTED_TYPES in message
    assert "arbitrary_types_allowed" not in message


def test_a_callable_parameter_gets_the_same_kind_of_message() -> None:
    """A Callable has no JSON form: the same message, not a raw PydanticInvalidForJsonSchema."""
    def apply(x: int, fn: Callable[[int], int]) -> int:
        return fn(x)

    with pytest.raises(DefinitionError, match=r"^tool 'apply': parameter 'fn' has type Callable"):
        read_signature(apply, "apply")


def test_more_arguments_than_parameters_are_refused_before_validation() -> None:
    """80,000 keys for a tool that takes three (issue #25): one short error naming a few,
    not one validation error per key."""
    arguments = json.dumps({"city": "Paris", **{f"k{i:05d}": i for i in range(80_000)}})
    with pytest.raises(ToolArgumentsError) as caught:
        strict_signature(weather).parse(arguments)
    message = str(caught.value)
    assert message.startswith("invalid arguments for tool 'weather': k00000: unexpected "
                              "argument; k00001: unexpected argument;")
    assert message.endswith("and more: 80001 arguments given, it takes 3")
    assert len(message) < 300

"""tools.units: unit_convert, called through worker.testing.call_tool."""

from __future__ import annotations

import pytest
from tool_worker_tools.units import unit_convert

from worker.testing import call_tool

from .helpers import error_text, ok_json


class TestUnitConvert:
    @pytest.mark.parametrize(
        ("value", "from_unit", "to_unit", "result"),
        [
            (10, "km", "mi", 6.21371192237),
            (3, "feet", "in", 36.0),
            (1, "lb", "g", 453.59237),
            (2, "hours", "min", 120.0),
            (90, "km/h", "m/s", 25.0),
            (1, "GiB", "MiB", 1024.0),
            (1, "gal", "L", 3.785411784),
            (100, "C", "F", 212.0),
            (32, "fahrenheit", "celsius", 0.0),
            (0, "K", "C", -273.15),
        ],
    )
    async def test_converts_between_units_of_a_kind(
        self, value: float, from_unit: str, to_unit: str, result: float
    ) -> None:
        """Units of one kind convert, by symbol or name, ignoring case."""
        data = await ok_json(
            unit_convert, {"value": value, "from_unit": from_unit, "to_unit": to_unit}
        )
        assert data["result"] == result

    async def test_output_names_the_canonical_units(self) -> None:
        """The model reads the value, both unit symbols and the result."""
        result = await call_tool(
            unit_convert, {"value": 100, "from_unit": "Celsius", "to_unit": "°F"}
        )
        assert (result.outcome, result.output) == (
            "ok",
            '{"value":100.0,"from_unit":"C","to_unit":"F","result":212.0}',
        )

    async def test_different_kinds_do_not_convert(self) -> None:
        """Mass to length is an error that lists the units that would work."""
        text = await error_text(unit_convert, {"value": 1, "from_unit": "kg", "to_unit": "m"})
        assert text == (
            "cannot convert mass (kg) to length (m); pick two mass units: kg, g, mg, t, lb, oz"
        )

    async def test_unknown_units_list_the_known_ones(self) -> None:
        """An unknown unit is an error listing every unit by kind."""
        text = await error_text(unit_convert, {"value": 1, "from_unit": "furlong", "to_unit": "m"})
        assert text.startswith("unknown unit 'furlong'; known units are length: m, km, cm")
        assert "temperature: C, F, K" in text

    async def test_temperatures_below_absolute_zero_are_errors(self) -> None:
        """-500 F does not exist, so it is not converted."""
        text = await error_text(unit_convert, {"value": -500, "from_unit": "F", "to_unit": "C"})
        assert text == "-500 F is below absolute zero (0 K, -273.15 C, -459.67 F)"

    async def test_results_beyond_the_float_range_are_errors(self) -> None:
        """A conversion that overflows is an error, not 'Infinity'."""
        text = await error_text(unit_convert, {"value": 1e308, "from_unit": "TB", "to_unit": "B"})
        assert text == "1e+308 TB is too large to express in B"

    @pytest.mark.parametrize(
        ("value", "problem"),
        [("NaN", "NaN is not a JSON value"), ("Infinity", "Infinity is not a JSON value"),
         ('"ten"', "value: ")],
    )
    async def test_value_must_be_a_finite_number(self, value: str, problem: str) -> None:
        """NaN, infinities and words are invalid arguments, even though json.loads reads them."""
        arguments = f'{{"value": {value}, "from_unit": "m", "to_unit": "km"}}'
        text = await error_text(unit_convert, arguments, "invalid_arguments")
        assert problem in text

"""The built-in tools, called the way the worker calls them: through worker.testing.call_tool."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tools import builtin
from tools.builtin import (
    calculate,
    current_time,
    describe_call,
    echo,
    random_number,
    sleep,
    unit_convert,
    word_count,
)
from worker.testing import call_tool, capture_logs, fake_context


async def ok_json(fn: Any, arguments: str | dict[str, Any]) -> Any:
    """Call a tool that must succeed and decode the JSON text the model would read."""
    result = await call_tool(fn, arguments)
    assert result.outcome == "ok", result.output
    return json.loads(result.output)


async def error_text(fn: Any, arguments: str | dict[str, Any], outcome: str = "error") -> str:
    """Call a tool that must fail with ``outcome`` and return the text the model would read."""
    result = await call_tool(fn, arguments)
    assert result.outcome == outcome, result.output
    return result.output


def test_every_tool_is_exported_with_a_one_line_description() -> None:
    """The docstring is what the model reads, so each tool has one, on one line."""
    assert sorted(builtin.__all__) == builtin.__all__
    for name in builtin.__all__:
        doc = getattr(builtin, name).__doc__
        assert doc, name
        assert "\n" not in doc.strip(), name


class TestCurrentTime:
    async def test_defaults_to_utc(self) -> None:
        """Without arguments the time is given in UTC, with a zero offset."""
        data = await ok_json(current_time, {})
        now = dt.datetime.fromisoformat(data["iso"])
        assert data["timezone"] == "UTC"
        assert data["utc_offset"] == "+00:00"
        assert now.utcoffset() == dt.timedelta(0)
        assert data["unix"] == int(now.timestamp())
        assert data["weekday"] == now.strftime("%A")

    async def test_reports_the_zone_offset(self) -> None:
        """A zone without daylight saving time reports its fixed offset and abbreviation."""
        data = await ok_json(current_time, {"timezone": "Asia/Kolkata"})
        assert data["timezone"] == "Asia/Kolkata"
        assert data["utc_offset"] == "+05:30"
        assert data["iso"].endswith("+05:30")
        assert data["abbreviation"] == "IST"

    async def test_negative_half_hour_offsets_keep_their_sign(self) -> None:
        """An offset such as -03:30 is not rounded or written as -04:30."""
        data = await ok_json(current_time, {"timezone": "America/St_Johns"})
        assert data["utc_offset"] in ("-03:30", "-02:30")
        assert data["iso"].endswith(data["utc_offset"])

    async def test_zone_names_are_case_insensitive(self) -> None:
        """'europe/paris' is answered as Europe/Paris."""
        data = await ok_json(current_time, {"timezone": "europe/paris"})
        assert data["timezone"] == "Europe/Paris"
        assert data["utc_offset"] in ("+01:00", "+02:00")

    async def test_unknown_zone_names_valid_examples(self) -> None:
        """An unknown zone is an error that shows the model what a valid name looks like."""
        text = await error_text(current_time, {"timezone": "Mars/Olympus_Mons"})
        assert text.startswith("unknown time zone 'Mars/Olympus_Mons'; use an IANA name")
        assert "'Europe/Paris'" in text

    @pytest.mark.parametrize(
        ("given", "suggested"),
        [
            ("Paris", "Europe/Paris"),
            ("New York", "America/New_York"),
            ("Europe/Pariss", "Europe/Paris"),
        ],
    )
    async def test_suggests_the_zone_of_a_city_or_typo(self, given: str, suggested: str) -> None:
        """A city name or a near miss is answered with the zone the model probably meant."""
        text = await error_text(current_time, {"timezone": given})
        assert f"did you mean {suggested!r}" in text

    @pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/localtime", "", "Europe"])
    async def test_paths_are_not_zones(self, path: str) -> None:
        """Only zone names are looked up: paths, directories and blanks are unknown zones."""
        text = await error_text(current_time, {"timezone": path})
        assert text.startswith("unknown time zone")

    async def test_overlong_zone_is_invalid(self) -> None:
        """The schema bounds the zone name, so a huge string never reaches the file system."""
        text = await error_text(current_time, {"timezone": "x" * 65}, "invalid_arguments")
        assert "timezone: String should have at most 64 characters" in text


class TestCalculate:
    @pytest.mark.parametrize(
        ("expression", "output"),
        [
            ("2 + 2", "4"),
            ("2 * (3 + 4) ** 2", "98"),
            ("-3 ** 2", "-9"),
            ("7 // 2", "3"),
            ("-7 % 3", "2"),
            ("1 / 4", "0.25"),
            ("2 ** -1", "0.5"),
            ("2 ** 100", "1267650600228229401496703205376"),
            ("1_000 * 1e3", "1000000.0"),
            ("sqrt(16)", "4.0"),
            ("log(8, 2)", "3.0"),
            ("abs(-7)", "7"),
            ("round(2.567, 2)", "2.57"),
            ("round(1234, -2)", "1200"),
            ("min(3, 1.5, 2)", "1.5"),
            ("max(1, 2) + floor(pi) + ceil(e)", "8"),
            ("cos(0) + sin(0)", "1.0"),
            ("degrees(tau)", "360.0"),
            ("(-1) ** (10 ** 100)", "1"),
            ("2 ** -10000", "0.0"),
        ],
    )
    async def test_evaluates_arithmetic(self, expression: str, output: str) -> None:
        """Integers stay exact, division gives floats, and the output is the number as text."""
        result = await call_tool(calculate, {"expression": expression})
        assert (result.outcome, result.output) == ("ok", output)

    async def test_a_long_flat_expression_is_fine(self) -> None:
        """Summing many terms is not mistaken for abuse."""
        result = await call_tool(calculate, {"expression": "+".join(["1"] * 250)})
        assert (result.outcome, result.output) == ("ok", "250")

    @pytest.mark.parametrize(
        "expression",
        ["9**9**9", "2 ** 10 ** 100", "10 ** 999 * 10", "(10 ** 500) ** 3", "2 ** 4000 // 3"],
    )
    async def test_refuses_integers_too_large_to_compute(self, expression: str) -> None:
        """A power tower is refused before it is computed; a hang would show as a timeout."""
        result = await call_tool(
            calculate, {"expression": expression}, ctx=fake_context(timeout_s=10)
        )
        assert result.outcome == "error"
        assert "more than 1000 digits" in result.output

    async def test_refuses_rounding_to_absurd_precision(self) -> None:
        """round(123, -10**100) would compute 10**(10**100); the digits are bounded instead."""
        result = await call_tool(
            calculate, {"expression": "round(123, -10 ** 100)"}, ctx=fake_context(timeout_s=10)
        )
        assert (result.outcome, result.output) == (
            "error",
            "round() takes a whole number of digits from -100 to 100",
        )

    @pytest.mark.parametrize("expression", ["1 / 0", "5 // 0", "5 % 0.0", "0 ** -1"])
    async def test_division_by_zero_is_an_error(self, expression: str) -> None:
        """Division by zero names the expression instead of failing the tool."""
        text = await error_text(calculate, {"expression": expression})
        assert text == f"division by zero in {expression!r}"

    @pytest.mark.parametrize("expression", ["1e308 * 10", "exp(1000)", "10.0 ** 400", "1e999"])
    async def test_float_overflow_is_an_error(self, expression: str) -> None:
        """A result beyond the float range is an error, not 'inf'."""
        text = await error_text(calculate, {"expression": expression})
        assert text.startswith(f"{expression!r} overflows a floating-point number")

    async def test_complex_results_are_refused(self) -> None:
        """A fractional power of a negative number is not silently complex."""
        text = await error_text(calculate, {"expression": "(-8) ** 0.5"})
        assert text == (
            "(-8) ** 0.5 is not a real number; a negative base needs an integer exponent"
        )

    @pytest.mark.parametrize(
        ("expression", "problem"),
        [("sqrt(-1)", "math domain error"), ("min()", "min expected at least 1 argument")],
    )
    async def test_math_errors_are_explained(self, expression: str, problem: str) -> None:
        """Domain and arity errors of the functions reach the model as text."""
        text = await error_text(calculate, {"expression": expression})
        assert text.startswith(f"cannot evaluate {expression!r}: {problem}")

    @pytest.mark.parametrize(
        ("expression", "message"),
        [
            ("__import__('os').system('id')", "\"__import__('os').system\" is not an available"),
            ("__import__('os')", "'__import__' is not an available function; the functions are"),
            ("open('/etc/passwd')", "'open' is not an available function"),
            ("math.sqrt(4)", "'math.sqrt' is not an available function"),
            ("x + 1", "unknown name 'x'; the only constants are pi, e, tau"),
            ("(1).real", "attribute access is not allowed"),
            ("(lambda: 1)()", "'lambda: 1' is not an available function"),
            ("[i for i in (1, 2)]", "a comprehension is not allowed"),
            ("(1, 2)[0]", "indexing is not allowed"),
            ("1 < 2", "a comparison is not allowed"),
            ("1 if 2 else 3", "if/else is not allowed"),
            ("1, 2", "a comma outside a function call is not allowed"),
            ("'abc'", "'abc' is not a number"),
            ("True", "True is not a number"),
            ("1j", "1j is not a number"),
            ("1 << 8", "the operator in '1 << 8' is not allowed"),
            ("~1", "the operator in '~1' is not allowed"),
            ("sin(x=1)", "sin() takes positional arguments only"),
        ],
    )
    async def test_refuses_anything_but_arithmetic(self, expression: str, message: str) -> None:
        """Names, attributes, other calls and other syntax are refused with what is allowed."""
        text = await error_text(calculate, {"expression": expression})
        assert text.startswith(message)

    async def test_refusals_list_what_is_allowed(self) -> None:
        """The model learns the operators, constants and functions it may use."""
        text = await error_text(calculate, {"expression": "1 < 2"})
        assert text == (
            "a comparison is not allowed; use only numbers, + - * / // % ** and parentheses, "
            "the constants pi, e, tau and the functions abs, acos, asin, atan, ceil, cos, "
            "degrees, exp, floor, log, log10, log2, max, min, radians, round, sin, sqrt, tan"
        )

    @pytest.mark.parametrize("expression", ["1 +", "(2", "import os", "\x00"])
    async def test_unparsable_expressions_are_errors(self, expression: str) -> None:
        """Text that is not an expression is an error quoting it."""
        text = await error_text(calculate, {"expression": expression})
        assert text.startswith(f"cannot parse {expression!r}: ")

    async def test_expression_length_is_bounded(self) -> None:
        """An expression over 500 characters is refused by validation, before parsing."""
        text = await error_text(calculate, {"expression": "1+" * 250 + "1"}, "invalid_arguments")
        assert "expression: String should have at most 500 characters" in text

    @pytest.mark.parametrize(
        ("arguments", "problem"),
        [
            ({}, "expression: Field required"),
            ({"expression": ""}, "expression: String should have at least 1 character"),
            ({"expression": 42}, "expression: Input should be a valid string"),
            ({"expression": "1", "precision": 3}, "precision: unexpected argument"),
            ('{"expression": "1 + 1"', "not valid JSON"),
            ('["1 + 1"]', "expected a JSON object of named arguments"),
        ],
    )
    async def test_invalid_arguments_are_reported(
        self, arguments: str | dict[str, Any], problem: str
    ) -> None:
        """Missing, empty, mistyped or extra arguments and broken JSON tell the model to retry."""
        text = await error_text(calculate, arguments, "invalid_arguments")
        assert text.startswith("Error: invalid arguments for tool 'calculate': ")
        assert problem in text
        assert text.endswith("Call the tool again with corrected arguments.")


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


class TestWordCount:
    async def test_counts_words_characters_and_lines(self) -> None:
        """Words are split on any whitespace; lines on line breaks."""
        data = await ok_json(word_count, {"text": "Hello, world!\n  second   line\n"})
        assert data == {"words": 4, "characters": 30, "characters_without_spaces": 22, "lines": 2}

    async def test_empty_text_counts_nothing(self) -> None:
        """An empty text has no words and no lines."""
        data = await ok_json(word_count, {"text": ""})
        assert data == {"words": 0, "characters": 0, "characters_without_spaces": 0, "lines": 0}


class TestRandomNumber:
    async def test_a_seed_repeats_the_pick(self) -> None:
        """The same seed gives the same number, within the bounds."""
        arguments = {"low": 1, "high": 1_000_000, "seed": 42}
        first = await ok_json(random_number, arguments)
        second = await ok_json(random_number, arguments)
        assert first == second
        assert 1 <= first <= 1_000_000

    async def test_bounds_are_inclusive(self) -> None:
        """When low equals high, that number is the only pick."""
        assert await ok_json(random_number, {"low": 7, "high": 7}) == 7

    async def test_reversed_bounds_are_an_error(self) -> None:
        """low above high tells the model to swap them."""
        text = await error_text(random_number, {"low": 6, "high": 1})
        assert text == "low (6) is greater than high (1); swap them"

    async def test_fractional_bounds_are_invalid(self) -> None:
        """The bounds are integers."""
        text = await error_text(random_number, {"low": 1.5, "high": 3}, "invalid_arguments")
        assert "low: Input should be a valid integer" in text


class TestEcho:
    @pytest.mark.parametrize("text", ["hello", "", '¿Qué tal? 👋\n"quoted" {json}'])
    async def test_returns_the_text_verbatim(self, text: str) -> None:
        """The output is the text itself, not JSON-encoded."""
        result = await call_tool(echo, {"text": text})
        assert (result.outcome, result.output) == ("ok", text)

    @pytest.mark.parametrize(
        ("arguments", "problem"),
        [({}, "text: Field required"), ({"text": 123}, "text: Input should be a valid string")],
    )
    async def test_text_is_a_required_string(self, arguments: dict[str, Any], problem: str) -> None:
        """A missing or non-string text is an invalid argument."""
        text = await error_text(echo, arguments, "invalid_arguments")
        assert problem in text


class TestSleep:
    async def test_reports_how_long_it_slept(self) -> None:
        """The output is the duration the model asked for, in seconds."""
        result = await call_tool(sleep, {"seconds": 0.01})
        assert (result.outcome, result.output) == ("ok", '{"slept_s":0.01}')

    @pytest.mark.parametrize(
        ("seconds", "problem"),
        [
            ("61", "less than or equal to 60"),
            ("-1", "greater than or equal to 0"),
            ("NaN", "NaN is not a JSON value"),
            ('"soon"', "a valid number"),
        ],
    )
    async def test_duration_is_bounded(self, seconds: str, problem: str) -> None:
        """Durations outside 0 to 60 seconds are invalid arguments."""
        text = await error_text(sleep, f'{{"seconds": {seconds}}}', "invalid_arguments")
        assert problem in text

    async def test_is_cut_short_by_the_deadline(self) -> None:
        """A sleep past the call's deadline ends as a timeout, so timeouts can be tested with it."""
        result = await call_tool(sleep, {"seconds": 60}, ctx=fake_context(timeout_s=0.05))
        assert result.outcome == "timeout"
        assert result.output.startswith("Error: the tool 'sleep' timed out")


class TestDescribeCall:
    async def test_reports_the_ids_of_the_call(self) -> None:
        """The handler runs in a worker thread and still sees its call's context."""
        ctx = fake_context(
            thread_id="thread_abc",
            run_id="run_abc",
            tool_call_id="call_abc",
            assistant_id="asst_abc",
            timeout_s=30,
        )
        result = await call_tool(describe_call, {}, ctx=ctx)
        assert result.outcome == "ok", result.output
        data = json.loads(result.output)
        assert data.pop("seconds_left") <= 30
        assert data == {
            "thread_id": "thread_abc",
            "run_id": "run_abc",
            "tool_call_id": "call_abc",
            "assistant_id": "asst_abc",
        }

    async def test_logs_through_the_context_logger(self) -> None:
        """ctx.log works from the worker thread."""
        with capture_logs() as logs:
            await ok_json(describe_call, {})
        assert {"event": "describing the call", "log_level": "info"} in [
            {key: entry[key] for key in ("event", "log_level")} for entry in logs
        ]

    async def test_takes_no_arguments(self) -> None:
        """The context is injected; the model has nothing to pass."""
        text = await error_text(describe_call, {"thread_id": "x"}, "invalid_arguments")
        assert "thread_id: unexpected argument" in text

"""tools.calculator: calculate, called through worker.testing.call_tool."""

from __future__ import annotations

from typing import Any

import pytest
from tool_worker_tools.calculator import calculate

from worker.testing import call_tool, fake_context

from .helpers import error_text


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

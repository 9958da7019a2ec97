"""calculate: arithmetic from the model's text, parsed with ast and never eval'd.

Only numbers, the arithmetic operators and a short list of math functions are evaluated;
integer results are bounded in size, so a power tower is refused before it is computed.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from worker import ToolError, tool

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["calculate"]


_Number = int | float

_MAX_EXPRESSION_CHARS = 500
_MAX_INT_DIGITS = 1000
_MAX_ROUND_DIGITS = 100
_MAX_INT = 10**_MAX_INT_DIGITS
# An int power whose result has more bits than this is refused before it is computed:
# 9**9**9 would take minutes and gigabytes otherwise.
_MAX_POWER_BITS = math.ceil(_MAX_INT_DIGITS * math.log2(10))


def _power(base: _Number, exponent: _Number) -> _Number:
    if _power_too_large(base, exponent):
        raise ToolError(
            f"{_short(base)} ** {_short(exponent)} would have more than {_MAX_INT_DIGITS} "
            "digits; use a smaller exponent, or floats for an estimate (up to about 1.8e308)"
        )
    result = base**exponent
    if isinstance(result, complex):
        raise ToolError(
            f"({_short(base)}) ** {_short(exponent)} is not a real number; "
            "a negative base needs an integer exponent"
        )
    return result


def _power_too_large(base: _Number, exponent: _Number) -> bool:
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return False  # float powers overflow quickly and cheaply; negative powers are floats
    if abs(base) <= 1:
        return False
    # Check the exponent alone first: multiplying a huge int by a float would overflow.
    return exponent > _MAX_POWER_BITS or exponent * math.log2(abs(base)) > _MAX_POWER_BITS


def _round(value: _Number, ndigits: _Number | None = None) -> _Number:
    # round(123, -10**100) computes 10**(10**100): bound ndigits like the exponent of **.
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > _MAX_ROUND_DIGITS):
        raise ToolError(
            f"round() takes a whole number of digits from -{_MAX_ROUND_DIGITS} to {_MAX_ROUND_DIGITS}"
        )
    return round(value) if ndigits is None else round(value, ndigits)


_BINARY: dict[type[ast.operator], Callable[[Any, Any], _Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], _Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., _Number]] = {
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "floor": math.floor,
    "ceil": math.ceil,
    "degrees": math.degrees,
    "radians": math.radians,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTION_NAMES = ", ".join(sorted(_FUNCTIONS))
_ALLOWED = (
    f"numbers, + - * / // % ** and parentheses, the constants {', '.join(_CONSTANTS)} "
    f"and the functions {_FUNCTION_NAMES}"
)
_NODE_NAMES: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "lambda",
    ast.Compare: "a comparison",
    ast.BoolOp: "and/or",
    ast.IfExp: "if/else",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.NamedExpr: "assignment",
    ast.Starred: "unpacking",
    ast.Tuple: "a comma outside a function call",
    ast.List: "a list",
    ast.Set: "a set",
    ast.Dict: "a dict",
    ast.JoinedStr: "an f-string",
}


@tool
def calculate(
    expression: Annotated[
        str,
        Field(
            min_length=1,
            max_length=_MAX_EXPRESSION_CHARS,
            description="arithmetic such as '2 * (3 + 4) ** 2' or 'sqrt(2) * pi'",
        ),
    ],
) -> _Number:
    """Evaluate an arithmetic expression exactly (integers) or in floating point."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ToolError(f"cannot parse {expression!r}: {reason}; it may use {_ALLOWED}") from None
    try:
        return _evaluate(tree.body)
    except ZeroDivisionError:
        raise ToolError(f"division by zero in {expression!r}") from None
    except OverflowError:
        raise ToolError(
            f"{expression!r} overflows a floating-point number (the largest is about 1.8e308)"
        ) from None
    except (ValueError, TypeError) as exc:
        # math.sqrt(-1) says "math domain error", min() "expected at least 1 argument".
        raise ToolError(f"cannot evaluate {expression!r}: {exc}") from None
    except RecursionError:
        raise ToolError(f"{expression!r} is nested too deeply") from None


def _evaluate(node: ast.expr) -> _Number:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return _checked(node.value)  # the literal 1e999 is parsed as inf
        raise ToolError(f"{node.value!r} is not a number; use only {_ALLOWED}")
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"unknown name {node.id!r}; the only constants are {', '.join(_CONSTANTS)}")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call):
        return _checked(_call(node))
    what = _NODE_NAMES.get(type(node), f"the operator in {_short(ast.unparse(node))!r}")
    raise ToolError(f"{what} is not allowed; use only {_ALLOWED}")


def _call(node: ast.Call) -> _Number:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        called = _short(ast.unparse(node.func))
        raise ToolError(
            f"{called!r} is not an available function; the functions are {_FUNCTION_NAMES}"
        )
    if node.keywords:
        raise ToolError(f"{node.func.id}() takes positional arguments only")
    return _FUNCTIONS[node.func.id](*(_evaluate(arg) for arg in node.args))


def _checked(value: _Number) -> _Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise OverflowError
    if isinstance(value, int) and abs(value) >= _MAX_INT:
        raise ToolError(
            f"an intermediate result has more than {_MAX_INT_DIGITS} digits; "
            "keep the numbers smaller, or use floats for an estimate"
        )
    return value


def _short(value: object, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

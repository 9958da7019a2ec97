"""Built-in tools: time, arithmetic, units and text, plus a few that exercise the worker itself.

Each handler is also an example to copy: typed parameters (bounds in ``Field`` where they
matter), a one-line docstring that the model reads as the tool's description, and a
``ToolError`` whose message tells the model what to do instead.
"""

from __future__ import annotations

import ast
import datetime as dt
import difflib
import functools
import math
import operator
import random
import zoneinfo
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import anyio.from_thread
from pydantic import Field

from worker import ToolContext, ToolError, tool

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "calculate",
    "current_time",
    "describe_call",
    "echo",
    "random_number",
    "sleep",
    "unit_convert",
    "word_count",
]

# ---------------------------------------------------------------------------------------------
# current_time

_EXAMPLE_ZONES = "'UTC', 'Europe/Paris', 'America/New_York', 'Asia/Kolkata'"


@tool
def current_time(
    timezone: Annotated[
        str, Field(max_length=64, description="IANA time zone name, e.g. 'Europe/Paris'")
    ] = "UTC",
) -> dict[str, str | int]:
    """Tell the current date and time in an IANA time zone, with its UTC offset."""
    # Sync on purpose: ZoneInfo reads the zone file from disk, so it runs in a worker thread.
    zone = _zone(timezone.strip())
    now = dt.datetime.now(zone).replace(microsecond=0)
    offset_min = (now.utcoffset() or dt.timedelta(0)) // dt.timedelta(minutes=1)
    sign = "-" if offset_min < 0 else "+"
    return {
        "timezone": str(zone),
        "iso": now.isoformat(),
        "utc_offset": f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}",
        "abbreviation": now.tzname() or "",
        "weekday": now.strftime("%A"),
        "unix": int(now.timestamp()),
    }


def _zone(name: str) -> dt.tzinfo:
    # UTC needs no zone file, so it works even on a machine without time zone data.
    if name.upper() in ("UTC", "Z", "ZULU", "GMT", "ETC/UTC"):
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    by_lower = _zones_by_lower_name()
    if name.lower() in by_lower:  # "europe/paris" means what it says
        return zoneinfo.ZoneInfo(by_lower[name.lower()])
    # "New York" is the city part of "America/New_York"; "Europe/Pairs" is a typo.
    city = name.lower().replace(" ", "_")
    matches = [zone for lower, zone in by_lower.items() if lower.rsplit("/", 1)[-1] == city]
    matches += [by_lower[lower] for lower in difflib.get_close_matches(city, by_lower, n=3)]
    message = f"unknown time zone {name!r}; use an IANA name such as {_EXAMPLE_ZONES}"
    if matches:
        unique = list(dict.fromkeys(matches))[:3]
        message += "; did you mean " + " or ".join(repr(zone) for zone in unique) + "?"
    raise ToolError(message)


@functools.cache
def _zones_by_lower_name() -> dict[str, str]:
    # available_timezones() walks the zone directory: do it once, and only on a miss.
    return {zone.lower(): zone for zone in zoneinfo.available_timezones()}


# ---------------------------------------------------------------------------------------------
# calculate

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


# ---------------------------------------------------------------------------------------------
# unit_convert

# kind -> canonical unit -> (factor to the kind's base unit, other names the model may use)
_UNITS: dict[str, dict[str, tuple[float, tuple[str, ...]]]] = {
    "length": {
        "m": (1.0, ("meter", "meters", "metre", "metres")),
        "km": (1000.0, ("kilometer", "kilometers", "kilometre", "kilometres")),
        "cm": (0.01, ("centimeter", "centimeters", "centimetre", "centimetres")),
        "mm": (0.001, ("millimeter", "millimeters", "millimetre", "millimetres")),
        "mi": (1609.344, ("mile", "miles")),
        "yd": (0.9144, ("yard", "yards")),
        "ft": (0.3048, ("foot", "feet")),
        "in": (0.0254, ("inch", "inches")),
        "nmi": (1852.0, ("nautical mile", "nautical miles")),
    },
    "mass": {
        "kg": (1.0, ("kilogram", "kilograms")),
        "g": (0.001, ("gram", "grams")),
        "mg": (1e-6, ("milligram", "milligrams")),
        "t": (1000.0, ("tonne", "tonnes", "metric ton")),
        "lb": (0.45359237, ("lbs", "pound", "pounds")),
        "oz": (0.028349523125, ("ounce", "ounces")),
    },
    "time": {
        "s": (1.0, ("sec", "second", "seconds")),
        "ms": (0.001, ("millisecond", "milliseconds")),
        "min": (60.0, ("minute", "minutes")),
        "h": (3600.0, ("hr", "hour", "hours")),
        "d": (86400.0, ("day", "days")),
        "wk": (604800.0, ("week", "weeks")),
    },
    "volume": {
        "l": (1.0, ("liter", "liters", "litre", "litres")),
        "ml": (0.001, ("milliliter", "milliliters", "millilitre", "millilitres")),
        "m3": (1000.0, ("cubic meter", "cubic meters")),
        "gal": (3.785411784, ("gallon", "gallons", "us gallon")),
    },
    "speed": {
        "m/s": (1.0, ("mps", "meters per second")),
        "km/h": (1 / 3.6, ("kph", "kmh", "kilometers per hour")),
        "mph": (0.44704, ("miles per hour",)),
        "kn": (1852 / 3600, ("knot", "knots")),
    },
    "data": {
        "B": (1.0, ("byte", "bytes")),
        "KB": (1e3, ("kilobyte", "kilobytes")),
        "MB": (1e6, ("megabyte", "megabytes")),
        "GB": (1e9, ("gigabyte", "gigabytes")),
        "TB": (1e12, ("terabyte", "terabytes")),
        "KiB": (1024.0, ("kibibyte",)),
        "MiB": (1024.0**2, ("mebibyte",)),
        "GiB": (1024.0**3, ("gibibyte",)),
        "TiB": (1024.0**4, ("tebibyte",)),
    },
    # Temperatures are affine, so they convert through kelvin in _to_kelvin/_from_kelvin.
    "temperature": {
        "C": (1.0, ("celsius", "°c", "degc")),
        "F": (1.0, ("fahrenheit", "°f", "degf")),
        "K": (1.0, ("kelvin",)),
    },
}
# Lower-case lookup: "KM", "Feet" and "kib" all work; the data units are bytes, never bits.
_UNIT_INDEX: dict[str, tuple[str, str]] = {
    name.lower(): (kind, unit)
    for kind, units in _UNITS.items()
    for unit, (_, aliases) in units.items()
    for name in (unit, *aliases)
}
_KNOWN_UNITS = "; ".join(f"{kind}: {', '.join(units)}" for kind, units in _UNITS.items())


@tool
def unit_convert(
    value: Annotated[float, Field(allow_inf_nan=False)],
    from_unit: Annotated[str, Field(description="e.g. 'km', 'lb', 'F', 'MiB', 'mph'")],
    to_unit: Annotated[str, Field(description="a unit of the same kind as from_unit")],
) -> dict[str, float | str]:
    """Convert a value between units of length, mass, time, volume, speed, data or temperature."""
    kind, source = _unit(from_unit)
    to_kind, target = _unit(to_unit)
    if kind != to_kind:
        raise ToolError(
            f"cannot convert {kind} ({source}) to {to_kind} ({target}); "
            f"pick two {kind} units: {', '.join(_UNITS[kind])}"
        )
    if kind == "temperature":
        result = _from_kelvin(_to_kelvin(value, source), target)
    else:
        result = value * _UNITS[kind][source][0] / _UNITS[kind][target][0]
    if not math.isfinite(result):
        raise ToolError(f"{value:g} {source} is too large to express in {target}")
    # Twelve significant digits hide binary noise such as 0.30000000000000004.
    return {
        "value": value,
        "from_unit": source,
        "to_unit": target,
        "result": float(f"{result:.12g}"),
    }


def _unit(name: str) -> tuple[str, str]:
    try:
        return _UNIT_INDEX[name.strip().lower()]
    except KeyError:
        raise ToolError(f"unknown unit {name!r}; known units are {_KNOWN_UNITS}") from None


def _to_kelvin(value: float, unit: str) -> float:
    kelvin = {"C": value + 273.15, "F": (value - 32) * 5 / 9 + 273.15, "K": value}[unit]
    if kelvin < 0:
        raise ToolError(f"{value:g} {unit} is below absolute zero (0 K, -273.15 C, -459.67 F)")
    return kelvin


def _from_kelvin(kelvin: float, unit: str) -> float:
    return {"C": kelvin - 273.15, "F": (kelvin - 273.15) * 9 / 5 + 32, "K": kelvin}[unit]


# ---------------------------------------------------------------------------------------------
# text and randomness


@tool
def word_count(text: str) -> dict[str, int]:
    """Count the words, characters and lines of a text."""
    return {
        "words": len(text.split()),
        "characters": len(text),
        "characters_without_spaces": sum(1 for char in text if not char.isspace()),
        "lines": len(text.splitlines()),
    }


@tool
def random_number(
    low: int,
    high: int,
    seed: Annotated[int | None, Field(description="the same seed gives the same number")] = None,
) -> int:
    """Pick a random integer from low to high, both included; pass a seed to repeat a pick."""
    if low > high:
        raise ToolError(f"low ({low}) is greater than high ({high}); swap them")
    # Not for secrets: a seeded, repeatable pick is the point of this tool.
    return random.Random(seed).randint(low, high)  # noqa: S311


# ---------------------------------------------------------------------------------------------
# tools that exercise the worker: round trips, timeouts, context in threads


@tool
def echo(text: str) -> str:
    """Return the text unchanged (to test that tool calls reach the worker and back)."""
    return text


@tool
async def sleep(
    seconds: Annotated[
        float, Field(ge=0, le=60, allow_inf_nan=False, description="how long to wait, 0 to 60")
    ],
) -> dict[str, float]:
    """Wait some seconds, then report it (to test concurrency and timeouts)."""
    await anyio.sleep(seconds)
    return {"slept_s": seconds}


@tool
def describe_call(ctx: ToolContext) -> dict[str, str | float]:
    """Report the ids of this tool call and the seconds left before its deadline."""
    # A sync handler runs in a worker thread; the deadline is on the event loop's clock.
    now = anyio.from_thread.run_sync(anyio.current_time)
    ctx.log.info("describing the call")
    return {
        "thread_id": ctx.thread_id,
        "run_id": ctx.run_id,
        "tool_call_id": ctx.tool_call_id,
        "assistant_id": ctx.assistant_id,
        "seconds_left": round(ctx.deadline - now, 1),
    }

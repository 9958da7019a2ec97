"""unit_convert: lengths, masses, times, volumes, speeds, data sizes and temperatures."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from worker import ToolError, tool

__all__ = ["unit_convert"]


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

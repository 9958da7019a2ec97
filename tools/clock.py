"""current_time: the date and time in an IANA time zone, forgiving of case, cities and typos."""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import zoneinfo
from typing import Annotated

from pydantic import Field

from worker import ToolError, tool

__all__ = ["current_time"]


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

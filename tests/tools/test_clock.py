"""tools.clock: current_time, called through worker.testing.call_tool."""

from __future__ import annotations

import datetime as dt

import pytest
from tool_worker_tools.clock import current_time

from .helpers import error_text, ok_json


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

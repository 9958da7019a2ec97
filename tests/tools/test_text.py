"""tools.text: word_count and random_number, called through worker.testing.call_tool."""

from __future__ import annotations

from tool_worker_tools.text import random_number, word_count

from .helpers import error_text, ok_json


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

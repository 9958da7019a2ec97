"""Text and random picks: word_count and random_number."""

from __future__ import annotations

import random
from typing import Annotated

from pydantic import Field

from worker import ToolError, tool

__all__ = ["random_number", "word_count"]


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

"""Claims: a round is dispatched once; LocalClaims keeps them in this process."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Hashable

__all__ = ["LocalClaims"]


class LocalClaims:
    """In-process claims: each round key is granted once while its run is followed."""

    def __init__(self) -> None:
        self._by_run: dict[str, set[Hashable]] = {}

    def try_claim(self, run_id: str, round_key: Hashable) -> bool:
        """Claim a round; False when this process already dispatched it."""
        keys = self._by_run.setdefault(run_id, set())
        if round_key in keys:
            return False
        keys.add(round_key)
        return True

    def release(self, run_id: str, round_key: Hashable) -> None:
        """Give a round back, so it is dispatched again (its submission failed)."""
        self._by_run.get(run_id, set()).discard(round_key)

    def forget_run(self, run_id: str) -> None:
        """Drop a finished run's keys: a terminal run never shows a round again."""
        self._by_run.pop(run_id, None)

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_run.values())

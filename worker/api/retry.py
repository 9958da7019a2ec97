"""The retry policy: which failed requests are sent again, and after how long."""

from __future__ import annotations

import random

from worker.errors import ApiConnectionError, ApiError, ApiStatusError, ApiTimeout, RateLimited

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy"]

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryPolicy:
    """Capped exponential backoff with full jitter; ``Retry-After`` wins when the API sends it."""

    def __init__(
        self, max_retries: int, *, base_s: float = 0.25, cap_s: float = 8.0, seed: int | None = None
    ) -> None:
        self.max_retries = max_retries
        self.base_s = base_s
        self.cap_s = cap_s
        self._random = random.Random(seed)  # noqa: S311 - jitter, not cryptography

    def delay_s(self, attempt: int, error: ApiError | None = None) -> float:
        """How long to wait before try ``attempt + 1``; ``error`` is what the last one met."""
        if isinstance(error, RateLimited) and error.retry_after_s is not None:
            return min(error.retry_after_s, 60.0)
        return self._random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))

    @staticmethod
    def is_retryable(error: ApiError) -> bool:
        """Whether the same request may succeed if sent again."""
        if isinstance(error, ApiStatusError):
            return error.status in RETRYABLE_STATUSES
        return isinstance(error, ApiConnectionError | ApiTimeout) and not error.lasting

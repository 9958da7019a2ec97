"""The API's clock: how far it is from ours, read from the ``Date`` of its answers.

``expires_at`` is a time on the API's clock. A local clock that is minutes off would make
every deadline wrong: calls "timing out after 0.0 s", or runs left to expire unanswered. So
deadlines are computed on the API's clock, estimated from the answers themselves.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from email.utils import parsedate_to_datetime

__all__ = ["ApiClock"]


class ApiClock:
    """A running estimate of ``API time - local time`` from the ``Date`` header of answers.

    ``Date`` has one-second resolution, so one sample is only good to about a second; the
    estimate is the median of recent samples, and offsets under ``deadband_s`` count as none
    (clocks in sync should not move deadlines by sampling noise).
    """

    def __init__(self, *, samples: int = 15, deadband_s: float = 2.0) -> None:
        self._samples: deque[float] = deque(maxlen=samples)
        self._deadband_s = deadband_s
        self.offset_s = 0.0

    def observe(self, date_header: str | None, received_at: float | None = None) -> None:
        """Take one answer's ``Date`` (an HTTP date) received at ``received_at`` (epoch)."""
        if not date_header:
            return
        try:
            api_time = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return  # a garbled Date says nothing about the clock
        local = time.time() if received_at is None else received_at
        # The API stamped a time somewhere in [Date, Date + 1): take the middle.
        self._samples.append(api_time + 0.5 - local)
        median = statistics.median(self._samples)
        self.offset_s = median if abs(median) >= self._deadband_s else 0.0

    def now(self) -> float:
        """The API's time now, in epoch seconds."""
        return time.time() + self.offset_s

"""Quirks of other Assistants-compatible servers, each opt-in, and the polling-hint modes.

Every quirk is off by default, so the simulator keeps the OpenAI API's behaviour unless a test
asks for a server that differs:

- `list_order_by_second`: `created_at` is kept to whole seconds and lists are sorted by it
  alone, so an object made in the same second as the one before is listed after it even with
  `order=desc` (a client that reads only `limit=1` misses a new run).
- `late_submit_404`: a submission to a run that is not in `requires_action` is a 404, not a 400.
- `null_expiry`: `expires_at` is always null; the run still expires `expires_after_s` after
  creation, as a server with an internal timeout it does not show.
- `float_times`: every timestamp (`created_at`, `expires_at`, `started_at`, ...) is a float.
- `plain_ids`: ids are uuid strings, without `asst_`/`thread_`/`msg_`/`run_`/`call_` prefixes.
- `empty_required_action`: once a run has taken a submission, `required_action` is `{}` instead
  of null whenever the run is not waiting for outputs.
- `partial_submissions`: a submission that leaves out some of the round's tool calls is
  accepted and the run moves on to its next round (or completes); the calls left out are never
  answered. Unknown or repeated tool_call_ids are still refused with a 400.
- `metadata_underscore`: a thread is shown with its metadata under `metadata_` (a server whose
  ORM reserves the name `metadata`), and no `metadata` field.
- `stream_replays_round`: a submission with `"stream": true` streams the round it has just
  answered (`thread.run.requires_action` with the calls it answered) and ends; the run has
  moved on, and a client learns its next round by reading the run.
- `api_v1_path`: the API is served under `/api/v1` instead of `/v1` (a server with its own
  web app at `/`); any other path answers 404, as a wrong base_url meets it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "POLL_HINTS",
    "QUIRKS",
    "PollHints",
    "Quirk",
    "check_poll_hints",
    "check_quirks",
    "timestamp",
]

Quirk = Literal[
    "list_order_by_second",
    "late_submit_404",
    "null_expiry",
    "float_times",
    "plain_ids",
    "empty_required_action",
    "partial_submissions",
    "metadata_underscore",
    "stream_replays_round",
    "api_v1_path",
]
QUIRKS: tuple[Quirk, ...] = get_args(Quirk)

# "exact" names the moment the run will change (an oracle no real server gives); "coarse" says
# 1000 ms whenever the run is thinking, like a server with a fixed hint; "off" sends no header.
PollHints = Literal["exact", "coarse", "off"]
POLL_HINTS: tuple[PollHints, ...] = get_args(PollHints)


def check_quirks(names: Iterable[str]) -> frozenset[Quirk]:
    """The quirk names as a set, or a ValueError that lists the known ones."""
    chosen = frozenset(names)
    unknown = sorted(chosen - set(QUIRKS))
    if unknown:
        raise ValueError(f"unknown quirk(s) {unknown}; known quirks: {', '.join(QUIRKS)}")
    return frozenset(q for q in QUIRKS if q in chosen)


def check_poll_hints(mode: str) -> PollHints:
    """The polling-hint mode, or a ValueError that lists the known ones."""
    for known in POLL_HINTS:
        if mode == known:
            return known
    raise ValueError(f"unknown poll_hints {mode!r}; use one of: {', '.join(POLL_HINTS)}")


def timestamp(moment: float, quirks: frozenset[Quirk]) -> int | float:
    """Epoch seconds as the server shows them: floored to an int, or a float with `float_times`."""
    return moment if "float_times" in quirks else math.floor(moment)

"""The simulated account's storage and clock, and the run lifecycle that time drives."""

from __future__ import annotations

import math
import random
import string
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.simulator.approvals import APPROVAL_ACTION, mcp_call, round_action
from worker.simulator.quirks import timestamp
from worker.simulator.run_script import final_answer
from worker.simulator.runs import THINKING_STATUSES, RunRecord
from worker.simulator.wire import paginate, text_content

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from worker.simulator.quirks import PollHints, Quirk
    from worker.simulator.wire import ToolCallScript

__all__ = ["Event", "Store", "Submission"]

_ID_ALPHABET = string.ascii_letters + string.digits

# A server-sent event of a run: its name (`thread.run.queued`, ...) and its JSON data.
Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Submission:
    """One submit_tool_outputs request that reached the simulator, and how it was answered."""

    thread_id: str
    run_id: str
    round_index: int | None
    tool_outputs: tuple[tuple[str, str], ...]
    status: int
    error: str | None
    at: float
    body: object = field(default=None, compare=False, repr=False)  # the request's JSON
    tool_approvals: tuple[tuple[str, bool], ...] = ()  # (tool_call_id, approve), on Azure


class Store:
    """Objects by id, seeded ids, timestamps, and the transitions each run makes as time passes.

    Transitions are applied lazily, at the moment they would have happened, by every read; each
    one is also sent, as a stream event, to whoever watches the run.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        thinking_s: float = 0.0,
        expires_after_s: float = 600.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        quirks: frozenset[Quirk] = frozenset(),
        poll_hints: PollHints = "exact",
        profile: str = "openai",
    ) -> None:
        self.thinking_s = thinking_s
        self.profile = profile
        self.expires_after_s = expires_after_s
        self.clock = clock
        self.monotonic = monotonic
        self.quirks = quirks
        self.poll_hints = poll_hints
        self.submissions: list[Submission] = []
        self.rounds_visible: dict[tuple[str, int], float] = {}
        self._rng = random.Random(seed)  # noqa: S311 - seeded for reproducibility, not secrecy
        self._assistants: dict[str, dict[str, Any]] = {}
        self._threads: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._thread_runs: dict[str, list[str]] = {}
        self._runs: dict[str, RunRecord] = {}
        self._watchers: dict[str, list[list[Event]]] = {}

    def new_id(self, prefix: str) -> str:
        """A fresh id like the API's: `prefix` and 24 seeded-random alphanumerics (or a uuid)."""
        if "plain_ids" in self.quirks:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        return prefix + "".join(self._rng.choices(_ID_ALPHABET, k=24))

    def now(self) -> float:
        """The clock, kept to whole seconds by a server that sorts by them."""
        now = self.clock()
        return math.floor(now) if "list_order_by_second" in self.quirks else now

    def stamp(self, moment: float) -> int | float:
        """Epoch seconds as this server shows them."""
        return timestamp(moment, self.quirks)

    def page(self, objects: Sequence[Mapping[str, Any]], **page: Any) -> dict[str, Any]:
        """A cursor page of `objects` (oldest first), ordered as this server orders lists."""
        return paginate(objects, by_created_at="list_order_by_second" in self.quirks, **page)

    def render(self, run: RunRecord) -> dict[str, Any]:
        """The run's RunObject JSON as this server shows it."""
        return run.render(self.quirks)

    # stream events

    def watch(self, run_id: str) -> list[Event]:
        """A list that receives every event of the run from now on, until `unwatch`."""
        sink: list[Event] = []
        self._watchers.setdefault(run_id, []).append(sink)
        return sink

    def unwatch(self, run_id: str, sink: list[Event]) -> None:
        """Stop filling `sink`."""
        sinks = self._watchers.get(run_id, [])
        if sink in sinks:
            sinks.remove(sink)

    def emit(self, run_id: str, event: str, data: dict[str, Any]) -> None:
        """Send an event to every watcher of the run."""
        for sink in self._watchers.get(run_id, ()):
            sink.append((event, data))

    def _emit_status(self, run: RunRecord) -> None:
        self.emit(run.id, f"thread.run.{run.status}", self.render(run))

    # messages (the run's answer is one)

    def append_message(
        self,
        thread_id: str,
        params: Mapping[str, Any],
        *,
        at: float | None = None,
        run: RunRecord | None = None,
    ) -> dict[str, Any]:
        """Add a message to the thread, written by `run` if given."""
        created_at = self.stamp(self.now() if at is None else at)
        message = {
            "id": self.new_id("msg_"),
            "object": "thread.message",
            "created_at": created_at,
            "thread_id": thread_id,
            "status": "completed",
            "incomplete_details": None,
            "completed_at": created_at if run is not None else None,
            "incomplete_at": None,
            "role": params.get("role", "user"),
            "content": text_content(params.get("content", "")),
            "assistant_id": run.assistant_id if run is not None else None,
            "run_id": run.id if run is not None else None,
            "attachments": list(params.get("attachments") or []),
            "metadata": dict(params.get("metadata") or {}),
        }
        self._messages[thread_id].append(message)
        return message

    # lifecycle

    def active_run(self, thread_id: str) -> RunRecord | None:
        """The thread's run that is not over yet, if any."""
        self.advance_thread(thread_id)
        for run_id in self._thread_runs[thread_id]:
            if not self._runs[run_id].terminal:
                return self._runs[run_id]
        return None

    def advance_thread(self, thread_id: str) -> None:
        """Apply the transitions time has made to the thread's runs."""
        for run_id in self._thread_runs[thread_id]:
            self.advance(self._runs[run_id])

    def advance_all(self) -> None:
        """Apply the transitions time has made to every run."""
        for run in self._runs.values():
            self.advance(run)

    def next_change_at(self, run: RunRecord) -> float | None:
        """When the run will next change by itself (epoch seconds), or None if it will not."""
        if run.status not in THINKING_STATUSES:
            return None
        return min(self._phase_ends(run), run.expires_at)

    def _phase_ends(self, run: RunRecord) -> float:
        if run.status == "queued" and self.thinking_s > 0:
            return run.queued_since + self.thinking_s / 2
        return run.queued_since + self.thinking_s

    def advance(self, run: RunRecord) -> None:
        """Apply the transitions time has made to the run."""
        now = self.clock()
        if run.status == "cancelling":
            run.status = "cancelled"
            self._emit_status(run)
            return
        while run.status in THINKING_STATUSES:
            phase_end = self._phase_ends(run)
            if phase_end > now or phase_end >= run.expires_at:
                break
            if run.status == "queued" and self.thinking_s > 0:
                run.status = "in_progress"
                run.started_at = phase_end if run.started_at is None else run.started_at
            else:
                self._think(run, phase_end)
            self._emit_status(run)
        if not run.terminal and now >= run.expires_at:
            run.status = "expired"
            run.tool_calls = ()
            self._emit_status(run)

    def _think(self, run: RunRecord, at: float) -> None:
        if run.started_at is None:
            run.started_at = at
        if run.round_index < len(run.rounds):
            run.status = "requires_action"
            calls = run.rounds[run.round_index]
            run.pending_action = round_action(calls, run.action_type)
            mcp = run.pending_action == APPROVAL_ACTION
            run.tool_calls = tuple(self._required_call(call, mcp=mcp) for call in calls)
            self.rounds_visible[(run.id, run.round_index)] = self.monotonic() - (self.clock() - at)
            return
        run.status = "completed"
        run.completed_at = at
        answer = {"role": "assistant", "content": final_answer(len(run.rounds), run.outputs)}
        message = self.append_message(run.thread_id, answer, at=at, run=run)
        self.emit(run.id, "thread.message.created",
                  {**message, "status": "in_progress", "completed_at": None})
        self.emit(run.id, "thread.message.completed", dict(message))

    def _required_call(self, call: ToolCallScript, *, mcp: bool) -> dict[str, Any]:
        call_id = self.new_id("call_")
        if mcp and call.server_label is not None:
            return mcp_call(call_id, call)
        return {"id": call_id, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}}

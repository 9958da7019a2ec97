"""How a simulated Agents API session moves: turns start, ask their calls, wait, then answer.

Transitions are applied lazily, at the moment they would have happened, by every read (as the
Assistants side does); each one is also sent, as a live event, to whoever streams the session.

A turn: the session goes `in_progress` (`agent.session.in_progress`, `turn.created`,
`turn.in_progress`, the user message as `turn.item.added`); after `thinking_s` the model asks the
turn's calls (`turn.item.added` of each `function_call`, then `agent.session.requires_action`
carrying the session and its `required_actions`; the turn is `waiting`). Once every call is
answered the session is `in_progress` again, and after `thinking_s` the turn answers (a message
item, `turn.completed`, `agent.session.idle`) or, when scripted to fail, fails
(`turn.failed`, `agent.session.failed`). The next scripted turn starts `user_pause_s` after the
session went idle, as if the user wrote again.

Each model step (asking the calls, answering) costs one cent of `spend_control`: a session with
a limit it has spent pauses in `budget_reached` (`agent.session.budget_reached`) before its next
step, and goes on when the limit is raised or removed.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.simulator.agents_records import PendingCall, TurnRecord, usage
from worker.simulator.agents_script import TurnScript

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.simulator.agents_records import SessionRecord

__all__ = ["EventSink", "SessionLifecycle"]

_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(slots=True)
class EventSink:
    """Where one live stream collects a session's events; `wake` is set when one arrives."""

    events: list[dict[str, Any]] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False  # the server is stopping: the stream ends


class SessionLifecycle:
    """Ids, the clock, live-event watchers and the transitions of sessions and their turns.

    Args:
        seed: the seed of every id.
        thinking_s: how long the model thinks before asking a turn's calls and before answering.
        user_pause_s: how long a session stays idle before its next scripted turn starts.
        clock: epoch seconds, for the API's timestamps and every transition.
        monotonic: the clock of `turns_visible`, for latency measurements.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        thinking_s: float = 0.0,
        user_pause_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.thinking_s = thinking_s
        self.user_pause_s = user_pause_s
        self.clock = clock
        self.monotonic = monotonic
        # When each (session_id, turn index) reached requires_action, on `monotonic`.
        self.turns_visible: dict[tuple[str, int], float] = {}
        # Called with each session that reaches requires_action (webhook deliveries).
        self.on_requires_action: list[Callable[[SessionRecord], None]] = []
        self._rng = random.Random(f"agents:{seed}")  # noqa: S311 - reproducible ids, not secrets
        self._sessions: dict[str, SessionRecord] = {}
        self._watchers: dict[str, list[EventSink]] = {}

    def new_id(self, prefix: str) -> str:
        """A fresh id: `prefix` and 24 seeded-random alphanumerics."""
        return prefix + "".join(self._rng.choices(_ID_ALPHABET, k=24))

    # live events

    def watch(self, session_id: str, sink: EventSink | None = None) -> EventSink:
        """A sink (`sink`, or a new one) that receives every event of the session from now on,
        until `unwatch`."""
        sink = EventSink() if sink is None else sink
        self._watchers.setdefault(session_id, []).append(sink)
        return sink

    def unwatch(self, session_id: str, sink: EventSink) -> None:
        """Stop filling `sink`."""
        sinks = self._watchers.get(session_id, [])
        if sink in sinks:
            sinks.remove(sink)

    def close_streams(self) -> None:
        """End every live stream (the server stops)."""
        for sinks in self._watchers.values():
            for sink in sinks:
                sink.closed = True
                sink.wake.set()

    def streams_open(self, session_id: str | None = None) -> int:
        """How many live streams follow the session (or any session)."""
        if session_id is not None:
            return len(self._watchers.get(session_id, ()))
        return sum(len(sinks) for sinks in self._watchers.values())

    def emit(self, target: str, event_type: str, /, **fields: Any) -> dict[str, Any]:
        """Send an event (a fresh `event_id`) to every stream of session `target`; returns it."""
        event = {"type": event_type, "event_id": self.new_id("evt_"), **fields}
        for sink in self._watchers.get(target, ()):
            sink.events.append(event)
            sink.wake.set()
        return event

    def _emit_session(self, session: SessionRecord, status: str) -> None:
        self.emit(session.id, f"agent.session.{status}", session=session.render())

    def _emit_turn(self, session: SessionRecord, turn: TurnRecord, name: str) -> None:
        fields: dict[str, Any] = {"session_id": session.id, "turn_id": turn.id,
                                  "turn": turn.render()}
        if name in ("completed", "failed", "cancelled"):
            fields["usage"] = usage(1)
        self.emit(session.id, f"agent.session.turn.{name}", **fields)

    def _emit_item(self, session: SessionRecord, turn: TurnRecord, item: dict[str, Any],
                   *, done: bool = False, index: int | None = None) -> None:
        if index is None:
            index, turn.outputs = turn.outputs, turn.outputs + 1
        self.emit(session.id, f"agent.session.turn.item.{'done' if done else 'added'}",
                  session_id=session.id, turn_id=turn.id, output_index=index, item=item)

    # transitions

    def next_change_at(self, session: SessionRecord) -> float | None:
        """When the session will next change by itself (epoch seconds), or None if it will not."""
        if session.status == "in_progress":
            return session.phase_since + self.thinking_s
        if session.status == "idle":
            return session.user_at
        return None

    def advance(self, session: SessionRecord) -> None:
        """Apply the transitions time has made to the session."""
        now = self.clock()
        while True:
            change_at = self.next_change_at(session)
            if change_at is None or change_at > now:
                return
            turn = session.turn
            if session.status == "idle":
                self.start_turn(session, change_at, "Next, please.")
            elif session.over_budget:
                self._pause(session, change_at)
            elif turn is not None and not turn.asked and turn.script.calls:
                session.spent_cents += 1
                self._ask(session, turn, change_at)
            elif turn is not None:
                session.spent_cents += 1
                self._finish(session, turn, change_at)

    def start_turn(self, session: SessionRecord, at: float, text: str,
                   script: TurnScript | None = None) -> TurnRecord:
        """A user message starts a turn: the next scripted one, unless `script` is given."""
        if script is None:
            script = self.next_script(session)
        turn = self._new_turn(session, at, script)
        session.turns.append(turn)
        session.status, session.phase_since, session.user_at = "in_progress", at, None
        session.last_active_at = at
        self._emit_session(session, "in_progress")
        self._emit_turn(session, turn, "created")
        turn.status, turn.started_at = "in_progress", at
        self._emit_turn(session, turn, "in_progress")
        self.add_user_message(session, turn, text)
        return turn

    def _new_turn(self, session: SessionRecord, at: float, script: TurnScript) -> TurnRecord:
        return TurnRecord(self.new_id("turn_"), session.id, session.agent["id"], at, script)

    def next_script(self, session: SessionRecord) -> TurnScript:
        """The session's next scripted turn, or a turn without calls once the script is done."""
        if session.next_script >= len(session.script):
            return TurnScript()
        session.next_script += 1
        return session.script[session.next_script - 1]

    def add_user_message(self, session: SessionRecord, turn: TurnRecord, text: str) -> None:
        """The user's message, as an item of the turn."""
        item = {"type": "message", "id": self.new_id("msg_"), "role": "user",
                "status": "completed", "turn_id": turn.id,
                "content": [{"type": "input_text", "text": text}]}
        self.emit(session.id, "agent.session.turn.item.added", session_id=session.id,
                  turn_id=turn.id, item=item)

    def _ask(self, session: SessionRecord, turn: TurnRecord, at: float) -> None:
        for call in turn.script.calls:
            mcp = call.server_label is not None
            pending = PendingCall(self.new_id("mcpr_" if mcp else "call_"),
                                  self.new_id("mcp_" if mcp else "fc_"), call)
            turn.calls.append(pending)
            index = turn.outputs
            self._emit_item(session, turn, pending.item(turn.id, "in_progress"))
            if not mcp:
                self._emit_item(session, turn, pending.item(turn.id, "completed"), done=True,
                                index=index)
        turn.asked, turn.status = True, "waiting"
        session.status, session.last_active_at = "requires_action", at
        self.turns_visible[(session.id, len(session.turns) - 1)] = (
            self.monotonic() - (self.clock() - at))
        self._emit_session(session, "requires_action")
        for hook in self.on_requires_action:
            hook(session)

    def answer(self, session: SessionRecord, turn: TurnRecord, call: PendingCall,
               event: dict[str, Any], at: float) -> None:
        """Record the answer of one call; the turn goes on once all its calls are answered."""
        call.answer = event
        if call.approval:
            status = {"approve": "completed", "deny": "failed"}.get(
                event["response"]["decision"], "incomplete")
            self._emit_item(session, turn, call.item(turn.id, status), done=True)
        else:
            self._emit_item(session, turn, {
                "type": "function_call_output", "id": self.new_id("fco_"),
                "call_id": call.call_id, "turn_id": turn.id,
                "status": "completed" if event["success"] else "failed",
                "output": event.get("output"), "error": event.get("error")})
        session.last_active_at = at
        if not turn.waiting:
            turn.status = "in_progress"
            self._emit_turn(session, turn, "in_progress")
            session.status, session.phase_since = "in_progress", at
            self._emit_session(session, "in_progress")

    def _finish(self, session: SessionRecord, turn: TurnRecord, at: float) -> None:
        turn.completed_at, session.last_active_at = at, at
        if turn.script.fail is not None:
            turn.status = "failed"
            turn.error = {"code": "server_error", "message": turn.script.fail}
            self._emit_turn(session, turn, "failed")
            session.status, session.error = "failed", turn.script.fail
            self._emit_session(session, "failed")
            return
        answered = len(turn.calls)
        text = f"Done: {answered} call(s) answered." if answered else "Hello from the simulator."
        message = {"type": "message", "id": self.new_id("msg_"), "role": "assistant",
                   "turn_id": turn.id, "phase": "final_answer"}
        index = turn.outputs
        self._emit_item(session, turn, {**message, "status": "in_progress", "content": []})
        self._emit_item(session, turn, {**message, "status": "completed",
                                         "content": [{"type": "output_text", "text": text}]},
                        done=True, index=index)
        turn.status = "completed"
        self._emit_turn(session, turn, "completed")
        session.status = "idle"
        if session.next_script < len(session.script):
            session.user_at = at + self.user_pause_s
        self._emit_session(session, "idle")

    def _pause(self, session: SessionRecord, at: float) -> None:
        """The model's next step would spend past the limit: the session waits for a new one."""
        session.status, session.last_active_at = "budget_reached", at
        self._emit_session(session, "budget_reached")

    def set_spend_limit(self, session: SessionRecord, limit: int | None) -> None:
        """A new `spend_control.limit`; a session paused by the old one goes on at once."""
        session.spend_limit = limit
        if session.status == "budget_reached" and not session.over_budget:
            session.status, session.phase_since = "in_progress", self.clock()
            self._emit_session(session, "in_progress")

    def cancel(self, session: SessionRecord, turn: TurnRecord, at: float) -> None:
        """Cancel the active turn: its calls are no longer pending; no scripted turn follows."""
        turn.status, turn.completed_at = "cancelled", at
        self._emit_turn(session, turn, "cancelled")
        session.status, session.user_at, session.last_active_at = "idle", None, at
        self._emit_session(session, "idle")

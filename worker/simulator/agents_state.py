"""The simulated Agents API account: agents, sessions, and the input events they took.

Rules the API documents nowhere, decided here (and in the README's Agents section):
- A POST of input events is checked whole before any of it applies: one bad event and the whole
  request is a 400 that changed nothing.
- A tool result (or an MCP approval) for an unknown call is a 400 "Unknown pending tool call:
  <call_id>" (the text the SDK's helper retries on); for a call already answered, a 400 with
  code `tool_call_already_answered`; for a call whose turn is over (cancelled, failed), a 400
  with code `tool_call_not_pending`; the same call twice in one request, `duplicate_tool_call`.
- A partial answer of a turn is accepted (202): the answered calls leave `required_actions`,
  the session stays `requires_action` for the others, and the turn goes on once all are in.
- An `Idempotency-Key` that comes back with the same body on the same session gets the same
  202 and is applied once (header `Idempotent-Replayed: true`); with another body, a 400
  `idempotency_key_reused`. Only accepted requests are remembered, so a refused one (the SDK's
  unknown-pending-call race) can be retried with its key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from worker.simulator.agents_inputs import (
    CANCEL,
    COMPUTER_USE_RESULT,
    MCP_RESULT,
    MESSAGE,
    TOOL_RESULT,
    input_text,
    parse_events,
)
from worker.simulator.agents_lifecycle import SessionLifecycle
from worker.simulator.agents_records import AgentRecord, SessionRecord
from worker.simulator.agents_sessions import new_session
from worker.simulator.wire import RequestRefused, not_found, paginate, refuse

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from worker.simulator.agents_lifecycle import EventSink
    from worker.simulator.agents_records import PendingCall, TurnRecord
    from worker.simulator.agents_script import TurnScript

__all__ = ["AgentsState", "EventsPost"]


@dataclass(frozen=True, slots=True)
class EventsPost:
    """One `POST /agents/sessions/{id}/events` that reached the simulator, and its answer."""

    session_id: str
    events: tuple[dict[str, Any], ...]
    status: int
    error: str | None
    at: float  # on the monotonic clock
    idempotency_key: str | None = None
    replayed: bool = False  # answered from the idempotency record, applied before
    turn_ids: tuple[str, ...] = field(default=())  # the turns its tool results answered

    @property
    def applied(self) -> bool:
        """Whether this request changed the session (accepted, and not a replay)."""
        return self.status == 202 and not self.replayed


class AgentsState(SessionLifecycle):
    """Agents, sessions and the input events of the simulated Agents API, without HTTP.

    Args:
        default_turns: the script of a session created without `metadata["sim_turns"]`; when
            None, one turn calling each of the agent's function tools once.
        (the rest as `SessionLifecycle`)
    """

    def __init__(self, *, default_turns: Sequence[TurnScript] | None = None,
                 **lifecycle: Any) -> None:
        super().__init__(**lifecycle)
        self.default_turns = None if default_turns is None else tuple(default_turns)
        self.posts: list[EventsPost] = []
        self._agents: dict[str, AgentRecord] = {}
        self._keys: dict[str, tuple[str, str]] = {}  # idempotency key -> (session, body)

    # agents

    def create_agent(self, params: Mapping[str, Any]) -> AgentRecord:
        """A saved agent from validated fields."""
        now = self.clock()
        agent = AgentRecord.from_params(self.new_id("agent_"), now, dict(params))
        self._agents[agent.id] = agent
        return agent

    def agent(self, agent_id: str) -> AgentRecord:
        """A saved agent, or a 404."""
        agent = self._agents.get(agent_id)
        if agent is None:
            raise not_found("agent", agent_id)
        return agent

    def list_agents(self, **page: Any) -> dict[str, Any]:
        """A page of saved agents, newest first by default."""
        return paginate([a.render() for a in self._agents.values()], **page)

    def delete_agent(self, agent_id: str) -> dict[str, Any]:
        """Forget a saved agent; its sessions keep their snapshot of it."""
        self.agent(agent_id)
        del self._agents[agent_id]
        return {"id": agent_id, "object": "agent.deleted", "deleted": True}

    # sessions

    def create_session(self, params: Mapping[str, Any], *, turns: Sequence[Any] | None = None,
                       sink: EventSink | None = None) -> SessionRecord:
        """A session from a create body; it starts its first turn when given `input`.

        `turns` (a script) overrides `metadata["sim_turns"]`; `sink` receives the session's
        events from `agent.session.created` on (a streaming create).
        """
        session, text = new_session(self, params, turns)
        self._sessions[session.id] = session
        if sink is not None:
            self.watch(session.id, sink)
        self.emit(session.id, "agent.session.created", session=session.render())
        if text is not None:
            self.start_turn(session, session.created_at, text)
        return session

    def session(self, session_id: str, *, advance: bool = True) -> SessionRecord:
        """The session as it is now (as it was last seen, without `advance`), or a 404."""
        session = self._sessions.get(session_id)
        if session is None:
            raise not_found("session", session_id)
        if advance:
            self.advance(session)
        return session

    def sessions(self) -> list[SessionRecord]:
        """Every session, oldest first, as they are now."""
        for session in self._sessions.values():
            self.advance(session)
        return list(self._sessions.values())

    def list_sessions(self, *, agent_id: str | None = None,
                      metadata: Mapping[str, str] | None = None, **page: Any) -> dict[str, Any]:
        """A cursor page of sessions, newest first by default, filtered by agent and metadata."""
        chosen = [
            {"id": s.id} for s in self.sessions()
            if (agent_id is None or s.agent["id"] == agent_id)
            and all(s.metadata.get(k) == v for k, v in (metadata or {}).items())
        ]
        # Paged by id first, so that only the page's sessions are rendered (10,000 sessions).
        listed = paginate(chosen, **page)
        listed["data"] = [self._sessions[item["id"]].render() for item in listed["data"]]
        return listed

    def delete_session(self, session_id: str) -> dict[str, Any]:
        """Forget a session."""
        self.session(session_id)
        del self._sessions[session_id]
        return {"id": session_id, "object": "agent.session.deleted", "deleted": True}

    def all_sessions_idle(self) -> bool:
        """Whether every session is idle (or failed) with no scripted turn left to start."""
        return all(s.status in ("idle", "failed") and s.user_at is None for s in self.sessions())

    # input events

    def post_events(self, session_id: str, body: object, key: str | None = None) -> bool:
        """Apply a POST of input events whole, or refuse it whole; True when it was a replay.

        Raises:
            RequestRefused: the 400 or 404 the request gets; it is recorded in `posts` too.
        """
        fingerprint = json.dumps(body, sort_keys=True, default=str)
        events = body.get("events") if isinstance(body, dict) else None
        post = EventsPost(session_id, tuple(events) if isinstance(events, list) else (), 202,
                          None, 0.0, key)
        try:
            if key is not None and key in self._keys:
                self._check_replay(key, session_id, fingerprint)
                self.posts.append(replace(post, at=self.monotonic(), replayed=True))
                return True
            turn_ids = self._apply(self.session(session_id), parse_events(body))
        except RequestRefused as exc:
            self.posts.append(replace(post, status=exc.status, error=exc.message,
                                      at=self.monotonic()))
            raise
        if key is not None:
            self._keys[key] = (session_id, fingerprint)
        self.posts.append(replace(post, at=self.monotonic(), turn_ids=turn_ids))
        return False

    def _check_replay(self, key: str, session_id: str, fingerprint: str) -> None:
        if self._keys[key] != (session_id, fingerprint):
            raise refuse("This Idempotency-Key was already used with another request; use a "
                         "new key for a different request.", code="idempotency_key_reused")

    def _apply(self, session: SessionRecord, events: list[dict[str, Any]]) -> tuple[str, ...]:
        """Check every event against the session, then apply them all in order."""
        answers = self._answers(session, events)
        kinds = {event["type"] for event in events}
        if session.status == "failed" and kinds & {MESSAGE, CANCEL}:
            raise refuse(f"Session '{session.id}' has failed; it takes no more input.")
        if CANCEL in kinds and (session.turn is None or session.status == "idle"):
            raise refuse(f"Session '{session.id}' has no active turn to cancel.")
        now = self.clock()
        for index, event in enumerate(events):
            if index in answers:
                turn, call = answers[index]
                if turn.status == "waiting":  # not cancelled earlier in this request
                    self.answer(session, turn, call, event, now)
            elif event["type"] == MESSAGE:
                self._message(session, input_text(event["input"], "input"), now)
            elif event["type"] == CANCEL and session.status != "idle" and session.turn:
                self.cancel(session, session.turn, now)
        self.advance(session)
        return tuple(dict.fromkeys(turn.id for turn, _ in answers.values()))

    def _message(self, session: SessionRecord, text: str, at: float) -> None:
        turn = session.turn
        if session.status == "idle" or turn is None:
            self.start_turn(session, at, text)
        else:  # steers the active turn: recorded, nothing else changes
            self.add_user_message(session, turn, text)

    def _answers(self, session: SessionRecord,
                 events: list[dict[str, Any]]) -> dict[int, tuple[TurnRecord, PendingCall]]:
        """The pending call each answer event answers, by event index, or the request's 400."""
        answers: dict[int, tuple[TurnRecord, PendingCall]] = {}
        seen: set[str] = set()
        for index, event in enumerate(events):
            kind = event["type"]
            if kind == COMPUTER_USE_RESULT:
                raise refuse(f"No pending computer-use approval request "
                             f"'{event['request_id']}'.", param=f"events[{index}].request_id")
            if kind not in (TOOL_RESULT, MCP_RESULT):
                continue
            answers[index] = self._pending(session, event, f"events[{index}]")
            call_id = answers[index][1].call_id
            if call_id in seen:
                raise refuse(f"Tool call '{call_id}' is answered twice in this request.",
                             param=f"events[{index}]", code="duplicate_tool_call")
            seen.add(call_id)
        return answers

    def _pending(self, session: SessionRecord, event: dict[str, Any],
                 where: str) -> tuple[TurnRecord, PendingCall]:
        approval = event["type"] == MCP_RESULT
        call_id = event["request_id" if approval else "call_id"]
        found = [(t, c) for t in session.turns for c in t.calls if c.call_id == call_id]
        if not found:
            raise refuse(f"Unknown pending tool call: {call_id}", param=f"{where}.call_id",
                         code="invalid_request_error")
        turn, call = found[0]
        if not approval and turn.id != event["turn_id"]:
            raise refuse(f"Tool call '{call_id}' belongs to turn '{turn.id}', not "
                         f"'{event['turn_id']}'.", param=f"{where}.turn_id")
        if call.approval != approval:
            wanted = MCP_RESULT if call.approval else TOOL_RESULT
            raise refuse(f"'{call_id}' is answered with {wanted} events.", param=f"{where}.type")
        if call.answer is not None:
            raise refuse(f"Tool call '{call_id}' was already answered.", param=where,
                         code="tool_call_already_answered")
        if turn.status != "waiting":
            raise refuse(f"Tool call '{call_id}' is no longer pending: its turn '{turn.id}' is "
                         f"{turn.status}.", param=where, code="tool_call_not_pending")
        return turn, call

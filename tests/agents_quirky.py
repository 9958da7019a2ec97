"""An independent Agents API server for tests, with switchable quirks of other servers.

Written from the protocol as the official ``openai`` SDK's types describe it
(``openai/types/beta/agent_session*.py``, ``openai/resources/beta/agents/sessions/``), not
from the worker or its simulator, which it must not import: a test of the worker against a
server built from the worker's own reading of the protocol proves little.

A session runs a script of turns; each turn waits (``requires_action``) for the results of
its ``function_call`` actions, posted as ``agent.session.input.tool_result`` events. The
server records every events request (``posts``) and every result applied to a call, so a
test asserts from the server's side: each call answered once, each turn in one request.

Quirks: ``QUIRKS`` names and says each; switch on any combination.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

__all__ = ["QUIRKS", "Call", "Post", "QuirkyAgents", "Session", "Turn"]

QUIRKS = {
    "string_arguments": "arguments as a JSON string, not an object",
    "extra_fields": "unknown fields in sessions, actions, events and pages; keys in reverse "
                    "order; SSE id:/retry: lines and comments between events",
    "post_200_empty": "an accepted events request answered 200 with an empty JSON body",
    "post_200_session": "an accepted events request answered 200 with the session",
    "no_stream": "GET .../events is 404 (a server without streams)",
    "keepalive_stream": "the stream sends only ': keep-alive' comments, never an event",
    "stream_closes": "the stream closes after each event it sends",
    "two_turns": "two turns of the script wait at once, their actions interleaved",
    "partial_actions": "a turn's actions appear one more per read (and every 50 ms)",
    "listing": "the session listing ignores limit (pages of 3) and order (oldest first)",
    "transient": "some requests answered 500, or 429 with retry-after (not applied)",
    "lost_answers": "some accepted events requests answered 502 (applied, the answer lost)",
    "unknown_call_first": "a turn's first events request refused 400 'Unknown pending tool "
                          "call' (its calls not registered yet), not applied",
    "lagging_reads": "the two reads after an events request is applied show the session as "
                     "it was before (inputs applied asynchronously)",
    "sse_multiline": "stream events with no event: line, their JSON over several data: lines",
}
LISTING_PAGE = 3
UNKNOWN = "Unknown pending tool call"


@dataclass
class Call:
    id: str
    name: str
    arguments: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)  # applied tool_result events


@dataclass
class Turn:
    id: str
    calls: list[Call]
    revealed: int
    status: str = "waiting"
    refused_once: bool = False  # unknown_call_first
    posts: list[int] = field(default_factory=list)  # indexes of applied posts answering it

    def listed(self) -> list[Call]:
        return [c for c in self.calls[: self.revealed] if not c.results]


@dataclass
class Session:
    id: str
    agent_id: str
    created_at: int
    script: list[list[tuple[str, dict[str, Any]]]]
    status: str = "idle"
    turns: list[Turn] = field(default_factory=list)
    listeners: list[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)  # lagging_reads: reads to come

    def waiting(self) -> list[Turn]:
        return [t for t in self.turns if t.status == "waiting"]


@dataclass
class Post:
    session_id: str
    key: str | None
    events: list[dict[str, Any]]
    status: int
    applied: bool = False
    replay: bool = False
    reason: str = ""
    injected: bool = False  # refused by a quirk, not for what it asked


class QuirkyAgents:
    """``async with QuirkyAgents({"two_turns"}) as api``: sessions at ``api.base_url``."""

    def __init__(self, quirks: set[str] | frozenset[str] = frozenset(), *,
                 key: str = "sk-test", seed: int = 1, fault_rate: float = 0.15) -> None:
        unknown = set(quirks) - set(QUIRKS)
        assert not unknown, f"unknown quirks {unknown}; known: {QUIRKS}"
        self.quirks = frozenset(quirks)
        self.key = key
        self.fault_rate = fault_rate
        self._random = random.Random(seed)  # noqa: S311 - seeded faults, not cryptography
        self._ids = itertools.count(1)
        self.sessions: dict[str, Session] = {}
        self.posts: list[Post] = []
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.shown: Counter[str] = Counter()  # what the quirks showed: they were exercised
        self.bad_headers = 0
        self._answers: dict[str, tuple[int, bytes]] = {}  # idempotency key -> first answer
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.base_url = ""

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._checks])
        app.router.add_get("/v1/agents/sessions", self._list)
        app.router.add_get("/v1/agents/sessions/{id}", self._retrieve)
        app.router.add_get("/v1/agents/sessions/{id}/events", self._stream)
        app.router.add_post("/v1/agents/sessions/{id}/events", self._post)
        app.router.add_get("/v1/agents/sessions/{id}/turns/{turn}", self._turn)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        if "partial_actions" in self.quirks:
            self._ticker = asyncio.get_running_loop().create_task(self._reveal_every(0.05))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for session in self.sessions.values():
            for listener in session.listeners:
                listener.put_nowait(None)
        assert self._runner is not None
        await self._runner.cleanup()

    # --- the scripted side: what a test sets up and reads back ---

    def create_session(self, script: list[list[tuple[str, dict[str, Any]]]], *,
                       agent_id: str = "agent_quirky") -> str:
        """A session whose turns call these tools; its first turn waits at once."""
        number = next(self._ids)
        session = Session(f"sess_q{number:04d}", agent_id, 1_780_000_000 + number,
                          [list(turn) for turn in script])
        self.sessions[session.id] = session
        self._advance(session)
        return session.id

    def all_idle(self) -> bool:
        return all(s.status == "idle" and not s.script for s in self.sessions.values())

    def applied(self) -> list[Post]:
        return [p for p in self.posts if p.applied]

    def refused(self) -> list[Post]:
        return [p for p in self.posts if p.status == 400 and not p.injected]

    def turns(self) -> list[Turn]:
        return [t for s in self.sessions.values() for t in s.turns]

    # --- the protocol ---

    def snapshot(self, session: Session) -> dict[str, Any]:
        actions = [self._action(turn, call) for turn in session.waiting()
                   for call in turn.listed()] if session.status == "requires_action" else []
        if "two_turns" in self.quirks:  # interleaved: a, x, b, y, ...
            actions.sort(key=lambda a: _position(session, a["call_id"]))
        turns = {a["turn_id"] for a in actions}
        self.shown["two turns listed"] += len(turns) > 1
        self.shown["part of a turn listed"] += any(
            t.revealed < len(t.calls) for t in session.waiting() if t.id in turns)
        body: dict[str, Any] = {
            "id": session.id, "object": "agent.session", "status": session.status,
            "agent": {"id": session.agent_id, "model": "gpt-quirky", "name": None,
                      "tools": [], "instructions": None},
            "created_at": session.created_at, "last_active_at": session.created_at,
            "metadata": {"tenant": "t1"}, "required_actions": actions, "error": None,
            "spend_control": {"consumed": None, "limit": None}, "vault_ids": [],
            "environment": {"type": "none"},
        }
        return self._dress(body, {"usage": None, "review": "none",
                                  "x_future": {"nested": [1, {"deep": True}]}})

    def _action(self, turn: Turn, call: Call) -> dict[str, Any]:
        arguments: object = call.arguments
        if "string_arguments" in self.quirks:
            arguments = json.dumps(call.arguments)
        action = {"type": "function_call", "turn_id": turn.id, "call_id": call.id,
                  "name": call.name, "arguments": arguments}
        return self._dress(action, {"status": "pending", "x_hint": 7})

    def _dress(self, body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        """With ``extra_fields``: unknown fields added and every key in reverse order."""
        if "extra_fields" not in self.quirks:
            return body
        return dict(reversed(list({**body, **extra}.items())))

    def _advance(self, session: Session) -> None:
        """Start the next turn(s) of the script once none waits; idle when none is left."""
        if session.waiting():
            self._emit(session, "requires_action")
            return
        if session.turns:
            self._emit(session, "in_progress")
        if not session.script:
            session.status = "idle"
            self._emit(session, "idle")
            return
        for _ in range(2 if "two_turns" in self.quirks else 1):
            if session.script:
                calls = [Call(f"call_q{next(self._ids):05d}", name, args)
                         for name, args in session.script.pop(0)]
                revealed = 1 if "partial_actions" in self.quirks else len(calls)
                session.turns.append(Turn(f"turn_q{next(self._ids):05d}", calls, revealed))
        session.status = "requires_action"
        self._emit(session, "requires_action")

    def _emit(self, session: Session, status: str) -> None:
        if status != "in_progress":
            session.status = status
        shown = self.snapshot(session)
        if status == "in_progress":
            shown = {**shown, "status": "in_progress", "required_actions": []}
        event = self._dress({"type": f"agent.session.{status}",
                             "event_id": f"event_{next(self._ids)}", "session": shown},
                            {"sequence_number": next(self._ids)})
        for listener in session.listeners:
            listener.put_nowait(event)

    async def _reveal_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            for session in self.sessions.values():
                if self._reveal(session):
                    self._emit(session, "requires_action")

    def _reveal(self, session: Session) -> bool:
        grew = False
        for turn in session.waiting():
            if turn.revealed < len(turn.calls):
                turn.revealed += 1
                grew = True
        return grew

    # --- the endpoints ---

    @web.middleware
    async def _checks(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return _error(401, "Incorrect API key provided")
        if request.headers.get("OpenAI-Beta") != "agents=v1":
            self.bad_headers += 1
        if "transient" in self.quirks and self._random.random() < self.fault_rate:
            status = self._random.choice((500, 429))
            self.faults[f"{request.method} {status}"] += 1
            headers = {"retry-after": "0.05"} if status == 429 else {}
            return _error(status, "try again", headers=headers)
        response: web.StreamResponse = await handler(request)
        return response

    def _session(self, request: web.Request) -> Session:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            raise web.HTTPNotFound(text=json.dumps({"error": {"message": "No such session"}}),
                                   content_type="application/json")
        return session

    async def _retrieve(self, request: web.Request) -> web.Response:
        self.requests["retrieve"] += 1
        session = self._session(request)
        if session.stale:
            self.shown["stale read"] += 1
        body = session.stale.pop(0) if session.stale else self.snapshot(session)
        self._reveal(session)  # partial_actions: the next read lists one more
        return web.json_response(body)

    async def _turn(self, request: web.Request) -> web.Response:
        self.requests["retrieve_turn"] += 1
        session = self._session(request)
        turn = next((t for t in session.turns if t.id == request.match_info["turn"]), None)
        if turn is None:
            return _error(404, "No such turn")
        status = "waiting" if turn.status == "waiting" else "completed"
        return web.json_response({"id": turn.id, "object": "agent.session.turn",
                                  "session_id": session.id, "agent_id": session.agent_id,
                                  "status": status, "created_at": session.created_at})

    async def _list(self, request: web.Request) -> web.Response:
        self.requests["list"] += 1
        query = request.query
        sessions = [s for s in self.sessions.values()
                    if "agent_id" not in query or s.agent_id == query["agent_id"]]
        ascending = "listing" in self.quirks or query.get("order") == "asc"
        sessions.sort(key=lambda s: s.created_at, reverse=not ascending)
        limit = LISTING_PAGE if "listing" in self.quirks else int(query.get("limit", "20"))
        ids = [s.id for s in sessions]
        start = ids.index(query["after"]) + 1 if query.get("after") in ids else 0
        page = sessions[start: start + limit]
        body = {"object": "list", "data": [self.snapshot(s) for s in page],
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": start + limit < len(sessions)}
        return web.json_response(self._dress(body, {"x_total": len(sessions)}))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.requests["stream"] += 1
        session = self._session(request)
        if "no_stream" in self.quirks:
            return _error(404, "Not found")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        session.listeners.append(queue)
        try:
            while "keepalive_stream" in self.quirks:  # until the client or the server goes
                await response.write(b": keep-alive\n\n")
                await asyncio.sleep(0.05)
            while (event := await queue.get()) is not None:
                await response.write(self._sse(event))
                if "stream_closes" in self.quirks:
                    break
        except ConnectionResetError:  # the client went
            pass
        finally:
            session.listeners.remove(queue)
        return response

    def _sse(self, event: dict[str, Any]) -> bytes:
        text = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
        if "sse_multiline" in self.quirks:
            lines = json.dumps(event, indent=1).splitlines()
            text = "".join(f"data: {line}\n" for line in lines) + "\n"
        if "extra_fields" in self.quirks:
            text = f": ping\n\nid: {event['event_id']}\nretry: 1000\n{text}"
        return text.encode()

    async def _post(self, request: web.Request) -> web.Response:
        self.requests["post"] += 1
        session = self._session(request)
        key = request.headers.get("Idempotency-Key")
        events = (await request.json()).get("events")
        post = Post(session.id, key, events if isinstance(events, list) else [], 400)
        self.posts.append(post)
        if key is not None and key in self._answers:  # a retry: the first answer, applied once
            post.replay = True
            post.status, body = self._answers[key]
            return _answer(post.status, body)
        post.reason = self._refusal(session, post.events)
        if post.reason:
            return _error(400, post.reason)
        if self._not_yet(session, post):
            return _error(400, post.reason)
        if "lagging_reads" in self.quirks:
            session.stale = [self.snapshot(session)] * 2
        self._apply(session, post)
        status, body = self._answer(session)
        if key is not None:
            self._answers[key] = (status, body)
        if "lost_answers" in self.quirks and self._random.random() < self.fault_rate:
            self.faults["POST lost"] += 1
            post.status = 502
            return _error(502, "bad gateway")
        post.status = status
        return _answer(status, body)

    def _not_yet(self, session: Session, post: Post) -> bool:
        """unknown_call_first: refuse a turn's first answer, as a server that has not
        registered its calls yet would."""
        turn = next(t for t in session.waiting() if t.id == post.events[0]["turn_id"])
        if "unknown_call_first" not in self.quirks or turn.refused_once:
            return False
        turn.refused_once = post.injected = True
        post.reason = f"{UNKNOWN}: {post.events[0]['call_id']!r}"
        self.faults["POST unknown call"] += 1
        return True

    def _refusal(self, session: Session, events: list[dict[str, Any]]) -> str:
        """Why the events cannot be applied, or "" (all or none are applied)."""
        if not events:
            return "events must not be empty"
        pending = {c.id: t.id for t in session.waiting() for c in t.listed()}
        seen: set[str] = set()
        for event in events:
            call_id, turn_id = event.get("call_id"), event.get("turn_id")
            if event.get("type") != "agent.session.input.tool_result":
                return f"unexpected event type {event.get('type')!r}"
            if not isinstance(event.get("success"), bool) or call_id in seen:
                return f"bad tool_result for {call_id!r}"
            if call_id not in pending or pending[call_id] != turn_id:
                answered = any(c.id == call_id for t in session.turns for c in t.calls)
                return (f"No pending tool call {call_id!r}: it already has a result"
                        if answered else f"{UNKNOWN}: {call_id!r} of turn {turn_id!r}")
            seen.add(call_id)
        return ""

    def _apply(self, session: Session, post: Post) -> None:
        post.applied = True
        index = self.posts.index(post)
        calls = {c.id: (t, c) for t in session.waiting() for c in t.calls}
        for event in post.events:
            turn, call = calls[event["call_id"]]
            call.results.append(event)
            if index not in turn.posts:
                turn.posts.append(index)
        for turn in session.waiting():
            if all(c.results for c in turn.calls):
                turn.status = "completed"
        self._advance(session)

    def _answer(self, session: Session) -> tuple[int, bytes]:
        if "post_200_empty" in self.quirks:
            return 200, b""
        if "post_200_session" in self.quirks:
            return 200, json.dumps(self.snapshot(session)).encode()
        return 202, b""


def _position(session: Session, call_id: str) -> tuple[int, int]:
    for turn_index, turn in enumerate(session.turns):
        for call_index, call in enumerate(turn.calls):
            if call.id == call_id:
                return call_index, turn_index
    return (0, 0)


def _answer(status: int, body: bytes) -> web.Response:
    """202 bare; 200 (a quirk) as JSON, even when the body is empty."""
    if status == 202:
        return web.Response(status=202)
    return web.Response(status=status, body=body, content_type="application/json")


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}},
                             status=status, headers=headers)

"""A small fake of the Agents API's sessions for the worker's tests (the built-in simulator's
``--protocol agents`` is the full one): sessions with scripted turns, live event streams,
tool results posted as events with idempotency keys, and every request counted."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import anyio
from aiohttp import web

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["FakeAgents", "Turn"]


@dataclass
class Turn:
    id: str
    calls: list[tuple[str, str, dict[str, Any]]]  # (call_id, name, arguments)
    answers: list[list[dict[str, Any]]] = field(default_factory=list)  # accepted events


@dataclass
class Session:
    id: str
    status: str = "idle"
    turn: Turn | None = None
    turns: list[Turn] = field(default_factory=list)
    listeners: list[MemoryObjectSendStream[dict[str, Any]]] = field(default_factory=list)


class FakeAgents:
    """``async with FakeAgents() as api``: sessions at ``api.base_url``."""

    def __init__(self, key: str = "sk-test", *, faults: float = 0.0, seed: int = 1) -> None:
        """``faults``: the share of requests refused (503, not applied) or whose answer is
        lost (applied, then 502), half each."""
        self.key = key
        self.faults = faults
        self.faulted: Counter[str] = Counter()
        self._random = random.Random(seed)  # noqa: S311 - seeded faults, not cryptography
        self.sessions: dict[str, Session] = {}
        self.requests: Counter[str] = Counter()
        self.refused: list[tuple[str, str]] = []  # (session, reason)
        self.keys: dict[str, int] = {}  # idempotency key -> accepted POSTs carrying it
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._fault])
        app.router.add_get("/v1/agents/sessions/{id}", self._get)
        app.router.add_get("/v1/agents/sessions/{id}/events", self._events)
        app.router.add_post("/v1/agents/sessions/{id}/events", self._post)
        app.router.add_get("/v1/agents/sessions", self._list)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in self.sessions.values():
            for listener in session.listeners:
                listener.close()
        assert self._runner is not None
        await self._runner.cleanup()

    @web.middleware
    async def _fault(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._random.random() < self.faults / 2:
            self.faulted["refused"] += 1
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        response: web.StreamResponse = await handler(request)
        streamed = request.method == "GET" and request.path.endswith("/events")
        if not streamed and self._random.random() < self.faults / 2:
            self.faulted["lost"] += 1
            return web.json_response({"error": {"message": "bad gateway"}}, status=502)
        return response

    def drop_streams(self) -> None:
        """Close every live stream, as a load balancer that cuts connections would."""
        for session in self.sessions.values():
            for listener in session.listeners:
                listener.close()
            session.listeners.clear()

    def create_session(self) -> str:
        session_id = f"sess_{next(self._ids)}"
        self.sessions[session_id] = Session(session_id)
        return session_id

    def start_turn(self, session_id: str, calls: list[tuple[str, dict[str, Any]]]) -> Turn:
        """A user message whose turn calls these tools and waits for their results."""
        session = self.sessions[session_id]
        assert session.status == "idle", session.status
        turn = Turn(f"turn_{next(self._ids)}",
                    [(f"call_{next(self._ids)}", name, args) for name, args in calls])
        session.turn = turn
        session.turns.append(turn)
        self._set(session, "in_progress")
        self._set(session, "requires_action")
        return turn

    def snapshot(self, session: Session) -> dict[str, Any]:
        actions = [] if session.turn is None or session.status != "requires_action" else [
            {"type": "function_call", "call_id": c, "turn_id": session.turn.id, "name": n,
             "arguments": a} for c, n, a in session.turn.calls]
        return {"id": session.id, "object": "agent.session", "status": session.status,
                "agent": {"id": "agent_1", "model": "m", "tools": []}, "metadata": {},
                "required_actions": actions, "created_at": 1_700_000_000}

    def _set(self, session: Session, status: str) -> None:
        session.status = status
        event = {"type": f"agent.session.{status}", "event_id": f"ev_{next(self._ids)}",
                 "session": self.snapshot(session)}
        for listener in list(session.listeners):
            try:
                listener.send_nowait(event)
            except (anyio.WouldBlock, anyio.ClosedResourceError):
                session.listeners.remove(listener)

    def _session(self, request: web.Request) -> Session:
        if request.headers.get("Authorization") != f"Bearer {self.key}" or \
                request.headers.get("OpenAI-Beta") != "agents=v1":
            raise web.HTTPUnauthorized(text='{"error": {"message": "bad key or beta"}}')
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            raise web.HTTPNotFound(text='{"error": {"message": "no such session"}}',
                                   content_type="application/json")
        return session

    async def _get(self, request: web.Request) -> web.Response:
        self.requests["retrieve"] += 1
        return web.json_response(self.snapshot(self._session(request)))

    async def _list(self, request: web.Request) -> web.Response:
        self.requests["list"] += 1
        ids = sorted(self.sessions, key=lambda s: int(s.split("_")[1]), reverse=True)
        return web.json_response({"data": [{"id": i} for i in ids], "has_more": False})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self.requests["stream"] += 1
        session = self._session(request)
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](100)
        session.listeners.append(send)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async with receive:
            async for event in receive:
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
        return response

    async def _post(self, request: web.Request) -> web.Response:
        self.requests["post"] += 1
        session = self._session(request)
        key = request.headers.get("Idempotency-Key", "")
        events = (await request.json())["events"]
        if key in self.keys:  # a retry of an accepted request: answered again, applied once
            self.keys[key] += 1
            return web.Response(status=202)
        turn = session.turn
        pending = {c for c, _, _ in turn.calls} if turn and session.status == "requires_action" \
            else set()
        answered = {e["call_id"] for e in events}
        if not pending or answered != pending:
            self.refused.append((session.id, f"not pending: {sorted(answered - pending)}"))
            return web.json_response({"error": {"message": "Unknown pending tool call"}},
                                     status=400)
        assert turn is not None
        turn.answers.append(events)
        self.keys[key] = 1
        self._set(session, "in_progress")
        self._set(session, "idle")
        return web.Response(status=202)

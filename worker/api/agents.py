"""SessionsClient: OpenAI's Agents API (sessions and turns) behind the worker's ``RoundsApi``.

A session is watched as a thread, and the turn whose ``function_call`` actions wait is its
run (``api.session_wire`` reads a session that way). Every result of a turn goes in one
``POST /agents/sessions/{id}/events`` whose ``Idempotency-Key`` is derived from the session,
the turn and its call ids, so a retry after a lost answer is applied once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio
import structlog

from worker import ids
from worker.api.budget import Lane
from worker.api.responses import items
from worker.api.session_wire import seconds, session_run, turn_status
from worker.api.sse import QUIET_END_S, read_events
from worker.api.transport import Transport
from worker.errors import ApiError, ApiStatusError, BadAnswer, NotFound, RunNotActionable
from worker.models import CallOutcome, Run, RunStatus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence
    from types import TracebackType

    from worker.api.backends import BackendProfile
    from worker.api.budget import RequestBudget
    from worker.api.clock import ApiClock
    from worker.api.retry import RetryPolicy
    from worker.config.settings import ApiSettings
    from worker.models import ToolApproval, ToolOutput
    from worker.observability.health import Health
    from worker.observability.metrics import Metrics

__all__ = ["STATUS_EVENTS", "SessionsClient", "idempotency_key", "input_events"]

log = structlog.get_logger("worker.api.agents")

# The live events that carry the whole session; everything else (text deltas, items) is
# the model talking, which the worker does not need.
STATUS_EVENTS = frozenset(
    f"agent.session.{status}"
    for status in ("requires_action", "in_progress", "idle", "failed", "budget_reached")
)
SUBMIT = "submit_tool_outputs"  # the endpoint's name in metrics and errors, as for runs
# The API can refuse a result for a call it has not registered yet (the call's events may come
# first); the official SDK sends the same request (same key) again after these delays. Past
# them the refusal is a passing failure: the round's submitter tries on for its window.
UNKNOWN_CALL = "Unknown pending tool call"
UNKNOWN_CALL_RETRY_S = (0.1, 0.3, 0.6)
DISCOVER_PAGE = 100


def idempotency_key(session_id: str, turn_id: str, call_ids: Sequence[str]) -> str:
    """The ``Idempotency-Key`` of a turn's answer: the same for every retry of it."""
    material = "\n".join([session_id, turn_id, *sorted(call_ids)])
    return "tw-" + hashlib.sha256(material.encode()).hexdigest()


def input_events(
    turn_id: str, outputs: Sequence[ToolOutput], approvals: Sequence[ToolApproval] = ()
) -> list[dict[str, Any]]:
    """The input events answering a turn: one tool result per output, or approval results.

    A call whose handler failed (an exception, a timeout, bad arguments, an unknown tool) is
    ``success: false`` with the text the model would get as its output in ``error``.
    """
    if approvals:
        return [{"type": "agent.session.input.mcp_approval_request_result",
                 "request_id": a.tool_call_id,
                 "response": {"type": "mcp_tool_call",
                              "decision": "approve" if a.approve else "deny"}}
                for a in approvals]
    events: list[dict[str, Any]] = []
    for output in outputs:
        ok = output.outcome is CallOutcome.OK
        events.append({"type": "agent.session.input.tool_result", "turn_id": turn_id,
                       "call_id": output.tool_call_id, "success": ok,
                       "output" if ok else "error": output.output})
    return events


class SessionsClient:
    """The Agents API endpoints the worker uses, over one ``Transport``; raises only ApiError."""

    def __init__(
        self, profile: BackendProfile, settings: ApiSettings, metrics: Metrics, *,
        agents: Sequence[str] = (), retry: RetryPolicy | None = None,
        budget: RequestBudget | None = None, clock: ApiClock | None = None,
        health: Health | None = None,
    ) -> None:
        """``agents``: whose sessions ``list_threads`` lists (all the key's when empty)."""
        self._transport = Transport(profile, settings, metrics, retry=retry, budget=budget,
                                    clock=clock, health=health)
        self._settings = settings
        self._metrics = metrics
        self._health = health
        self._agents: tuple[str | None, ...] = tuple(agents) or (None,)
        self.budget: RequestBudget = self._transport.budget

    async def __aenter__(self) -> Self:
        await self._transport.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    @property
    def can_stream(self) -> bool:
        """False: a turn's results are posted as events; its next round comes from the live
        stream, not from the answer."""
        return False

    @property
    def max_streams(self) -> int:
        return self._settings.max_streams

    async def retrieve_session(
        self, session_id: str, *, lane: Lane = Lane.ACTIVE, retries: int | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """The ``agent.session`` object as the API answers it."""
        answer = await self._transport.request(
            "GET", "retrieve_session", ids.path("/agents/sessions/{id}", id=session_id),
            lane=lane, retries=retries, timeout_s=timeout_s)
        return answer.data

    async def retrieve_run(
        self, thread_id: str, run_id: str, *, lane: Lane = Lane.ACTIVE,
        retries: int | None = None, timeout_s: float | None = None,
    ) -> Run:
        """The session as a run; when turn ``run_id`` no longer waits and the session is idle
        or failed, the turn's own status (completed, failed or cancelled)."""
        data = await self.retrieve_session(thread_id, lane=lane, retries=retries,
                                           timeout_s=timeout_s)
        with self._transport.counted():
            run = session_run("retrieve_session", data, thread_id, run_id)
        if run.id == run_id or run_id == thread_id or not run.status.is_terminal:
            return run
        status = await self._turn_status(thread_id, run_id, lane=lane, timeout_s=timeout_s)
        return Run(id=run_id, thread_id=thread_id, assistant_id=run.assistant_id,
                   status=status, expires_at=None, required_action_type=None, tool_calls=(),
                   created_at=run.created_at, metadata=run.metadata)

    async def _turn_status(
        self, session_id: str, turn_id: str, *, lane: Lane, timeout_s: float | None
    ) -> RunStatus:
        """How the turn ended; ``completed`` when the API does not say (the session is idle);
        ``unknown`` when the turn itself says it goes on."""
        try:
            answer = await self._transport.request(
                "GET", "retrieve_turn",
                ids.path("/agents/sessions/{id}/turns/{turn}", id=session_id, turn=turn_id),
                lane=lane, retries=0, timeout_s=timeout_s)
        except NotFound:
            return RunStatus.COMPLETED
        status = turn_status(answer.data)
        if status.is_terminal:
            return status
        if status is RunStatus.UNKNOWN:  # a status no document names: the session is idle
            return RunStatus.COMPLETED
        # The turn says it goes on while the session shows none waiting: one of the two reads
        # lags. Unknown: nothing is decided on it (the handlers go on; the round is kept).
        return RunStatus.UNKNOWN

    async def list_runs(
        self, thread_id: str, *, limit: int = 1, order: str = "desc", lane: Lane = Lane.ACTIVE,
        retries: int | None = None, timeout_s: float | None = None,
    ) -> list[Run]:
        """The session as its one run (one request: a session has one turn going at a time)."""
        data = await self.retrieve_session(thread_id, lane=lane, retries=retries,
                                           timeout_s=timeout_s)
        with self._transport.counted():
            return [session_run("retrieve_session", data, thread_id)]

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput], *,
        deadline: float | None = None, approvals: Sequence[ToolApproval] = (),
    ) -> Run:
        """Every result of turn ``run_id`` (or its approvals) in one events request.

        Raises:
            RunNotActionable: 400, a call is no longer pending (read the session back).
            ApiStatusError: a call is still unknown to the API after the SDK's retries
                (try again later, with the same key).
        """
        call_ids = [o.tool_call_id for o in outputs] + [a.tool_call_id for a in approvals]
        key = idempotency_key(thread_id, run_id, call_ids)
        for delay_s in (*UNKNOWN_CALL_RETRY_S, None):
            try:
                await self._transport.request(
                    "POST", SUBMIT, ids.path("/agents/sessions/{id}/events", id=thread_id),
                    body={"events": input_events(run_id, outputs, approvals)},
                    deadline=deadline, headers={"Idempotency-Key": key}, read_answer=False)
                break
            except RunNotActionable as exc:
                unknown = UNKNOWN_CALL in exc.api_message and not exc.after_lost_answer
                if not unknown:
                    raise
                if delay_s is None:  # not "no longer pending": not yet; not a refusal
                    raise ApiStatusError(exc.status, SUBMIT, exc.api_message,
                                         request_id=exc.request_id, code=exc.code) from None
                await anyio.sleep(delay_s)
        # 202: accepted, not done; the turn goes on and the live stream says what comes next.
        return Run(id=run_id, thread_id=thread_id, assistant_id="",
                   status=RunStatus.IN_PROGRESS, expires_at=None, required_action_type=None,
                   tool_calls=())

    async def submit_tool_outputs_streaming(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput], *,
        approvals: Sequence[ToolApproval] = (),
    ) -> Run | None:
        """As ``submit_tool_outputs``: the events endpoint does not stream its answer."""
        return await self.submit_tool_outputs(thread_id, run_id, outputs, approvals=approvals)

    async def list_threads(
        self, *, limit: int = DISCOVER_PAGE, after: str | None = None,
        known: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], str | None]:
        """One page of sessions, newest first, of one agent of ``[watch] agents`` at a time.

        An agent's listing stops at its first page that holds a ``known`` session: older ones
        were seen by an earlier listing. A page that lists an older session before a newer one
        (a server that ignores ``order``) does not stop it: its new sessions come last. The
        cursor is ``<agent index>:<session id>``.
        """
        index, _, cursor = (after or "0:").partition(":")
        agent = self._agents[int(index)]
        params: dict[str, Any] = {"limit": limit, "order": "desc"}
        if agent is not None:
            params["agent_id"] = agent
        if cursor:
            params["after"] = cursor
        answer = await self._transport.request(
            "GET", "list_sessions", "/agents/sessions", params=params, lane=Lane.IDLE)
        with self._transport.counted():
            listed = self._transport.at_most("list_sessions",
                                             items("list_sessions", answer.data), limit)
        found = [item.get("id") if isinstance(item, dict) else None for item in listed]
        session_ids = [s for s in found if isinstance(s, str) and ids.is_valid_id(s)]
        if len(session_ids) < len(found):
            log.warning("the session listing holds ids no API issues; skipping them",
                        skipped=len(found) - len(session_ids))
        met_known = (known is not None and _newest_first(listed)
                     and any(known(s) for s in session_ids))
        if answer.data.get("has_more") is True and session_ids and not met_known:
            return session_ids, f"{index}:{session_ids[-1]}"
        following = int(index) + 1
        return session_ids, (f"{following}:" if following < len(self._agents) else None)

    async def retrieve_thread_metadata(self, thread_id: str) -> Mapping[str, str]:
        """The session's ``metadata`` (what ``ctx.thread_metadata()`` gives handlers)."""
        data = await self.retrieve_session(thread_id)
        with self._transport.counted():
            return session_run("retrieve_session", data, thread_id).metadata

    @asynccontextmanager
    async def live_events(self, thread_id: str) -> AsyncIterator[AsyncIterator[Run]]:
        """The session's live events (``GET /agents/sessions/{id}/events``) as runs.

        Entering returns once the stream answered; iterating yields the session as each
        status event shows it, and ends when the stream ends or breaks (counted, and so is
        one that ends within ``QUIET_END_S`` of opening with no status event).

        Raises:
            ApiError: the stream was refused (an error status, or not an event stream).
        """
        endpoint = "session_events"
        path = ids.path("/agents/sessions/{id}/events", id=thread_id)
        async with self._transport.open_stream(endpoint, path, None, method="GET",
                                               lane=Lane.ACTIVE) as response:
            if response.status >= 400 or response.content_type != "text/event-stream":
                await self._transport.answer(endpoint, response)  # raises for an error status
                raise BadAnswer(endpoint, f"not an event stream but {response.content_type}")
            if self._health is not None:
                self._health.api_answered()
            self._metrics.streams_open.inc()
            try:
                yield self._runs(endpoint, response, thread_id)
            finally:
                self._metrics.streams_open.dec()

    async def _runs(
        self, endpoint: str, response: aiohttp.ClientResponse, session_id: str
    ) -> AsyncIterator[Run]:
        """The runs of a stream's status events."""
        opened, yielded = anyio.current_time(), 0
        try:
            async for event in read_events(response.content.iter_any(), endpoint=endpoint,
                                           max_event_bytes=self._settings.max_response_bytes):
                run = self._status_event(endpoint, event.data, session_id)
                if run is not None:
                    yielded += 1
                    yield run
        except (aiohttp.ClientError, TimeoutError, ApiError) as exc:
            self._metrics.streams_broken.inc()
            log.info("the session's event stream broke; reading the session",
                     error=str(exc) or type(exc).__name__)
            return
        if not yielded and anyio.current_time() - opened < QUIET_END_S:
            self._metrics.streams_broken.inc()  # live.py backs off from it as from a failure

    def _status_event(self, endpoint: str, data: str, session_id: str) -> Run | None:
        """The session a status event carries; None for other events.

        Raises:
            BadAnswer: a status event whose session does not parse: the stream is given up,
                and the session read, so that no round it announced is missed.
        """
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            return None  # "[DONE]", or a frame the worker cannot read: the session says
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str) or kind not in STATUS_EVENTS:  # a dict type is unhashable
            return None
        return session_run(endpoint, event.get("session"), session_id)


def _newest_first(listed: Sequence[object]) -> bool:
    """Whether the page's ``created_at`` never goes up (sessions without one count as equal):
    only a newest-first listing may stop at the first page that holds a known session."""
    times = [seconds(item.get("created_at") if isinstance(item, dict) else None)
             for item in listed]
    return all(newer >= older for newer, older in itertools.pairwise(times))

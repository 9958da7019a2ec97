"""ApiClient: one aiohttp session to the Assistants API; retries, Retry-After, errors -> ApiError."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio
import structlog

from . import ids
from .answers import (
    ANSWERS,
    Answer,
    decode,
    items,
    parse_run,
    poll_hint,
    read_capped,
    status_error,
    translate_errors,
)
from .budget import Lane, RequestBudget, RetryPolicy
from .errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeout,
    BadAnswer,
    NotFound,
    RunNotActionable,
)
from .events import RUN_ENDS, read_events

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from .backends import BackendProfile
    from .clock import ApiClock
    from .config import ApiSettings
    from .health import Health
    from .metrics import Metrics
    from .models import Run, ToolOutput

log = structlog.get_logger("worker.client")

__all__ = ["ApiClient"]


class ApiClient:
    """The Assistants API endpoints the worker uses, over one pooled aiohttp session.

    Use it as ``async with ApiClient(...) as client``. Every method raises only ``ApiError``.
    Each request pays for itself from ``budget``; answers report to ``health`` and their
    ``Date`` to ``clock`` when those are given.
    """

    def __init__(
        self,
        profile: BackendProfile,
        settings: ApiSettings,
        metrics: Metrics,
        *,
        retry: RetryPolicy | None = None,
        budget: RequestBudget | None = None,
        clock: ApiClock | None = None,
        health: Health | None = None,
    ) -> None:
        self._profile = profile
        self._settings = settings
        self._metrics = metrics
        self._retry = retry or RetryPolicy(settings.max_retries)
        self.budget = budget or RequestBudget(settings.max_requests_per_s)
        self._clock = clock
        self._health = health
        self._session: aiohttp.ClientSession | None = None
        self._background: aiohttp.ClientSession | None = None
        self._lasting_reported: set[str] = set()
        self._streams_open = 0

    async def __aenter__(self) -> Self:
        # Two pools: polls of idle and announced threads, which may hang by the hundred, can
        # never hold the connections that active runs and submissions wait for.
        self._session, self._background = self._new_session(), self._new_session()
        return self

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._settings.max_connections),
            timeout=aiohttp.ClientTimeout(
                total=self._settings.request_timeout_s, connect=self._settings.connect_timeout_s
            ),
            json_serialize=json.dumps,
        )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for session in (self._session, self._background):
            if session is not None:
                await session.close()
        self._session = self._background = None
        await self._profile.aclose()

    async def retrieve_run(
        self, thread_id: str, run_id: str, *, lane: Lane = Lane.ACTIVE,
        retries: int | None = None, timeout_s: float | None = None,
    ) -> Run:
        """The run as it is now.

        ``lane`` is its place in the request budget; ``retries`` and ``timeout_s`` override
        the configured ones (a poll is retried by the poller's schedule, not here).
        """
        answer = await self._request(
            "GET", "retrieve_run",
            ids.path("/threads/{thread_id}/runs/{run_id}", thread_id=thread_id, run_id=run_id),
            lane=lane, retries=retries, timeout_s=timeout_s,
        )
        return parse_run("retrieve_run", answer.data, answer.poll_after_ms)

    async def list_runs(
        self, thread_id: str, *, limit: int = 1, order: str = "desc", lane: Lane = Lane.ACTIVE,
        retries: int | None = None, timeout_s: float | None = None,
    ) -> list[Run]:
        """The thread's runs as the API lists them (newest first, by its own notion of it)."""
        answer = await self._request(
            "GET", "list_runs", ids.path("/threads/{thread_id}/runs", thread_id=thread_id),
            params={"limit": limit, "order": order}, lane=lane, retries=retries,
            timeout_s=timeout_s,
        )
        listed = items("list_runs", answer.data)
        return [parse_run("list_runs", item, answer.poll_after_ms) for item in listed]

    async def submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        outputs: Sequence[ToolOutput],
        *,
        deadline: float | None = None,
    ) -> Run:
        """Submit every output of a round in one request; retries stop at ``deadline``.

        Raises:
            RunNotActionable: the run does not take these outputs (any more).
        """
        body = {"tool_outputs": [output.to_json() for output in outputs]}
        answer = await self._request(
            "POST",
            "submit_tool_outputs",
            ids.path("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
                     thread_id=thread_id, run_id=run_id),
            body=body,
            deadline=deadline,
        )
        return parse_run("submit_tool_outputs", answer.data, answer.poll_after_ms)

    @property
    def can_stream(self) -> bool:
        """Whether one more stream may be held open: below ``[api] max_streams``."""
        return self._settings.stream and self._streams_open < self._settings.max_streams

    async def submit_tool_outputs_streaming(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> Run | None:
        """Submit with ``"stream": true`` and follow the run to its next round or its end.

        Returns the run as the stream last showed it (waiting for the next round, or ended),
        or None when the stream ended or broke without saying (look at the run). A server
        that ignores ``stream`` answers the run as JSON, which is returned as it is. Sent
        once: a stream that breaks may have been applied, so it is never resent blindly.

        Raises:
            ApiError: the outputs were not accepted (as ``submit_tool_outputs``).
        """
        endpoint = "submit_tool_outputs"
        body = {"tool_outputs": [output.to_json() for output in outputs], "stream": True}
        path = ids.path("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
                        thread_id=thread_id, run_id=run_id)
        if self._session is None:
            raise RuntimeError("use ApiClient as 'async with ApiClient(...) as client'")
        await self.budget.acquire(Lane.SUBMIT)  # the stream is one request; events are free
        started, status = anyio.current_time(), "error"
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._settings.connect_timeout_s,
            sock_read=self._settings.stream_idle_timeout_s,
        )
        try:
            with translate_errors(endpoint, self._settings.stream_idle_timeout_s):
                async with self._session.post(
                    self._profile.url(path), params=self._profile.query(),
                    headers=await self._profile.headers(), json=body, timeout=timeout,
                ) as response:
                    status = f"{response.status // 100}xx"
                    if response.status >= 400 or response.content_type != "text/event-stream":
                        answer = await self._answer(endpoint, response)
                        return parse_run(endpoint, answer.data, answer.poll_after_ms)
                    if self._health is not None:
                        self._health.api_answered()
                    return await self._follow(endpoint, response)
        except ApiError as error:
            self._count_error(endpoint, error)
            raise
        finally:
            self._metrics.api_requests.labels(endpoint, status).inc()
            self._metrics.api_request_duration.labels(endpoint).observe(
                anyio.current_time() - started)

    async def _follow(self, endpoint: str, response: aiohttp.ClientResponse) -> Run | None:
        """The last run a stream showed before its end; None if it broke or ended mid-way."""
        last: Run | None = None
        self._streams_open += 1
        self._metrics.streams_open.inc()
        try:
            async for event in read_events(response.content.iter_any(), endpoint=endpoint,
                                           max_event_bytes=self._settings.max_response_bytes):
                if event.name == "error":
                    raise BadAnswer(endpoint, f"the stream reported an error: {event.data[:200]}")
                if event.name.startswith("thread.run.") and event.name.count(".") == 2:
                    last = parse_run(endpoint, json.loads(event.data))
                    if event.name in RUN_ENDS:
                        return last
                elif event.name == "done":
                    break
        except (aiohttp.ClientError, TimeoutError, ApiError, ValueError) as exc:
            self._metrics.streams_broken.inc()
            log.info("the stream broke after the outputs were accepted; looking at the run",
                     error=str(exc) or type(exc).__name__)
            return None
        finally:
            self._streams_open -= 1
            self._metrics.streams_open.dec()
        return None  # it ended without the next round or the run's end

    async def list_threads(
        self, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[str], str | None]:
        """One page of thread ids, and the cursor of the next page (None on the last).

        A listed id that no API would issue is skipped, never watched.
        """
        params: dict[str, Any] = {"limit": limit, "order": "asc"}
        if after is not None:
            params["after"] = after
        answer = await self._request(
            "GET", "list_threads", "/threads", params=params, lane=Lane.IDLE
        )
        found = [item.get("id") for item in items("list_threads", answer.data)]
        thread_ids = [thread_id for thread_id in found if ids.is_valid_id(thread_id)]
        if len(thread_ids) < len(found):
            log.warning("the thread listing holds ids no API issues; skipping them",
                        skipped=len(found) - len(thread_ids))
        more = answer.data.get("has_more") is True and thread_ids
        return thread_ids, (thread_ids[-1] if more else None)

    async def list_assistants(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """The key's assistants."""
        answer = await self._request(
            "GET", "list_assistants", "/assistants", params={"limit": limit}
        )
        return [item for item in items("list_assistants", answer.data) if isinstance(item, dict)]

    async def retrieve_assistant(self, assistant_id: str) -> dict[str, Any]:
        """The assistant object as the API shows it (``tools`` among its fields).

        Raises:
            NotFound: no such assistant for this key.
        """
        answer = await self._request(
            "GET", "retrieve_assistant",
            ids.path("/assistants/{assistant_id}", assistant_id=assistant_id),
        )
        return answer.data

    async def modify_assistant(self, assistant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change the fields of the assistant given in ``body``; returns the updated assistant."""
        answer = await self._request(
            "POST", "modify_assistant",
            ids.path("/assistants/{assistant_id}", assistant_id=assistant_id),
            body=body,
        )
        return answer.data

    async def cancel_run(self, thread_id: str, run_id: str) -> Run:
        answer = await self._request(
            "POST", "cancel_run",
            ids.path("/threads/{thread_id}/runs/{run_id}/cancel", thread_id=thread_id, run_id=run_id),
        )
        return parse_run("cancel_run", answer.data, answer.poll_after_ms)

    async def _request(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        deadline: float | None = None,
        lane: Lane = Lane.SUBMIT,
        retries: int | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        max_retries = self._retry.max_retries if retries is None else retries
        attempt = 0
        maybe_applied = False
        while True:
            await self.budget.acquire(lane)
            try:
                return await self._request_once(
                    method, endpoint, path, params, body, deadline, timeout_s, lane
                )
            except ApiError as error:
                self._count_error(endpoint, error)
                lost = maybe_applied and endpoint == "submit_tool_outputs"
                if lost and isinstance(error, RunNotActionable | NotFound):
                    # The API answers 400 to a repeated submit, so a 400 after an attempt whose
                    # answer was lost may mean that attempt was applied: say so to the caller.
                    raise RunNotActionable(
                        error.status, endpoint, error.api_message, request_id=error.request_id,
                        code=error.code, after_lost_answer=True,
                    ) from error
                if attempt >= max_retries or not self._retry.is_retryable(error):
                    raise
                delay_s = self._retry.delay_s(attempt, error)
                if deadline is not None and anyio.current_time() + delay_s >= deadline:
                    raise
                maybe_applied = maybe_applied or isinstance(error, ApiConnectionError | ApiTimeout)
                attempt += 1
                self._metrics.api_retries.labels(endpoint).inc()
                log.warning("API request failed; retrying", endpoint=endpoint, error=str(error),
                            attempt=attempt, delay_s=round(delay_s, 3))
                await anyio.sleep(delay_s)

    def _count_error(self, endpoint: str, error: ApiError) -> None:
        self._metrics.api_errors.labels(endpoint, error.kind.value).inc()
        if self._health is not None and not isinstance(error, NotFound | RunNotActionable):
            self._health.api_failed(error)
        if error.lasting and error.kind.value not in self._lasting_reported:
            # A host that does not resolve or a refused certificate will not heal on its own:
            # say what failed once, loudly, instead of once per retry.
            self._lasting_reported.add(error.kind.value)
            log.error("the API cannot be reached until this is fixed", error=str(error))

    async def _request_once(
        self,
        method: str,
        endpoint: str,
        path: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        deadline: float | None,
        timeout_s: float | None,
        lane: Lane,
    ) -> Answer:
        session = self._background if lane >= Lane.ANNOUNCED else self._session
        if session is None:
            raise RuntimeError("use ApiClient as 'async with ApiClient(...) as client'")
        timeout_s = timeout_s or self._settings.request_timeout_s
        if deadline is not None:
            timeout_s = min(timeout_s, max(deadline - anyio.current_time(), 0.001))
        started = anyio.current_time()
        status = "error"
        query = self._profile.query()
        try:
            with translate_errors(endpoint, timeout_s):
                async with session.request(
                    method,
                    self._profile.url(path),
                    params={**query, **params} if params else query,
                    headers=await self._profile.headers(),
                    json=body,
                    timeout=aiohttp.ClientTimeout(
                        total=timeout_s, connect=self._settings.connect_timeout_s
                    ),
                ) as response:
                    status = f"{response.status // 100}xx"
                    return await self._answer(endpoint, response)
        finally:
            self._metrics.api_requests.labels(endpoint, status).inc()
            self._metrics.api_request_duration.labels(endpoint).observe(
                anyio.current_time() - started
            )

    async def _answer(self, endpoint: str, response: aiohttp.ClientResponse) -> Answer:
        if self._clock is not None:
            self._clock.observe(response.headers.get("Date"), time.time())
        payload = await read_capped(endpoint, response, self._settings.max_response_bytes)
        if response.status >= 400:
            error = status_error(endpoint, response, payload)
            if self._health is not None and error.kind in ANSWERS:
                self._health.api_answered()  # a 404 or a 400 is the API, there and listening
            raise error
        data = decode(endpoint, payload)
        if self._health is not None:
            self._health.api_answered()
        return Answer(data, poll_hint(response.headers))



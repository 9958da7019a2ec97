"""Transport: one pooled connection to the API, with the budget, retries and bounded answers.

Every request the worker makes passes here: it pays for itself from the request budget, is
retried by the retry policy, has its answer read within ``max_response_bytes``, and fails
only as an ``ApiError``, counted by kind. Answers report to ``health`` and their ``Date`` to
``clock``. Redirects are never followed (``allow_redirects=False`` on every request): a 3xx
would carry the key (``api-key`` survives aiohttp's cross-origin redirects), the
``OpenAI-Organization``/``OpenAI-Project`` headers and the tool outputs to wherever it points;
it is a ``Redirected`` error naming the location instead.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio
import structlog

from worker.api.budget import Lane, RequestBudget
from worker.api.responses import (
    ANSWERS,
    Answer,
    decode,
    poll_hint,
    read_capped,
    status_error,
    translate_errors,
)
from worker.api.retry import RetryPolicy
from worker.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeout,
    BadAnswer,
    NotFound,
    Redirected,
    RunNotActionable,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from types import TracebackType

    from worker.api.backends import BackendProfile
    from worker.api.clock import ApiClock
    from worker.config.settings import ApiSettings
    from worker.observability.health import Health
    from worker.observability.metrics import Metrics

__all__ = ["Transport"]

log = structlog.get_logger("worker.api.transport")


class Transport:
    """Sends requests to the API and reads their answers; use it as ``async with``."""

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
        self._streams: aiohttp.ClientSession | None = None
        self._lasting_reported: set[str] = set()

    async def __aenter__(self) -> Self:
        # Three pools, so that nothing holds the connections that active runs and submissions
        # wait for: polls of idle and announced threads, which may hang by the hundred, have
        # their own; so do streams, held open while the model thinks.
        limit = self._settings.max_connections
        self._session, self._background = self._new_session(limit), self._new_session(limit)
        self._streams = self._new_session(self._settings.max_streams)
        return self

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit),
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
        for session in (self._session, self._background, self._streams):
            if session is not None:
                await session.close()
        self._session = self._background = self._streams = None
        await self._profile.aclose()

    async def request(
        self, method: str, endpoint: str, path: str, *, params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None, deadline: float | None = None,
        lane: Lane = Lane.SUBMIT, retries: int | None = None, timeout_s: float | None = None,
        headers: dict[str, str] | None = None, read_answer: bool = True,
    ) -> Answer:
        """One request, retried by the policy (``retries`` overrides it); its answer.

        ``headers`` are sent besides the profile's (an ``Idempotency-Key``: each retry
        carries the same one). Without ``read_answer`` a 2xx is all that counts: its body is
        not parsed (an endpoint whose 202 means accepted, whatever a server puts in it).

        Raises:
            ApiError: the request failed, or the answer does not parse.
        """
        max_retries = self._retry.max_retries if retries is None else retries
        attempt = 0
        maybe_applied = False
        while True:
            try:
                async with self.budget.spend(lane):
                    return await self._request_once(
                        method, endpoint, path, params, body, deadline, timeout_s, lane, headers,
                        read_answer=read_answer)
            except ApiError as error:
                self.count_error(endpoint, error)
                delay_s = self._retry_delay(error, attempt, max_retries, deadline, maybe_applied)
                maybe_applied = maybe_applied or isinstance(error, ApiConnectionError | ApiTimeout)
                attempt += 1
                self._metrics.api_retries.labels(endpoint).inc()
                # Debug: health logs an outage once, with its count when it ends (not per retry).
                log.debug("API request failed; retrying", endpoint=endpoint, error=str(error),
                            attempt=attempt, delay_s=round(delay_s, 3))
                await anyio.sleep(delay_s)

    def _retry_delay(
        self, error: ApiError, attempt: int, max_retries: int, deadline: float | None,
        maybe_applied: bool,
    ) -> float:
        """How long to wait before sending the request again; raises when it is not sent."""
        lost = maybe_applied and error.endpoint == "submit_tool_outputs"
        if lost and isinstance(error, RunNotActionable | NotFound):
            # The API answers 400 to a repeated submit, so a 400 after an attempt whose answer
            # was lost may mean that attempt was applied: say so to the caller.
            raise RunNotActionable(
                error.status, error.endpoint, error.api_message, request_id=error.request_id,
                code=error.code, after_lost_answer=True,
            ) from error
        if attempt >= max_retries or not self._retry.is_retryable(error):
            raise error
        delay_s = self._retry.delay_s(attempt, error)
        if deadline is not None and anyio.current_time() + delay_s >= deadline:
            raise error
        return delay_s

    @contextmanager
    def counted(self) -> Iterator[None]:
        """Count a BadAnswer found in an answer's fields, as one found in its JSON is."""
        try:
            yield
        except BadAnswer as error:
            self.count_error(error.endpoint, error)
            raise

    def at_most(self, endpoint: str, listed: list[Any], limit: int) -> list[Any]:
        """The first ``limit`` items of a listing: a server that sends 55,000 when asked for 5
        must not make the worker parse them all. The excess is counted as a bad answer."""
        if len(listed) <= limit:
            return listed
        self.count_error(endpoint, BadAnswer(
            endpoint, f"{len(listed)} items listed when at most {limit} were asked for; "
                      "the rest are ignored"))
        return listed[:limit]

    def count_error(self, endpoint: str, error: ApiError) -> None:
        """Count a failed request by kind, tell health, and say once what will not heal."""
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
        headers: dict[str, str] | None = None,
        *,
        read_answer: bool = True,
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
                    headers={**await self._profile.headers(), **(headers or {})},
                    json=body,
                    timeout=aiohttp.ClientTimeout(
                        total=timeout_s, connect=self._settings.connect_timeout_s
                    ),
                    allow_redirects=False,
                ) as response:
                    status = f"{response.status // 100}xx"
                    return await self.answer(endpoint, response, read_answer=read_answer)
        finally:
            self._count_request(endpoint, status, started)

    def _count_request(self, endpoint: str, status: str, started: float) -> None:
        self._metrics.api_requests.labels(endpoint, status).inc()
        self._metrics.api_request_duration.labels(endpoint).observe(
            anyio.current_time() - started)

    async def answer(self, endpoint: str, response: aiohttp.ClientResponse, *,
                     read_answer: bool = True) -> Answer:
        """The answer of a response: its JSON object and hint, or the ApiError it means."""
        if self._clock is not None:
            self._clock.observe(response.headers.get("Date"), time.time())
        if 300 <= response.status < 400:
            raise Redirected(response.status, endpoint, response.headers.get("Location"))
        payload = await read_capped(endpoint, response, self._settings.max_response_bytes)
        if response.status >= 400:
            error = status_error(endpoint, response, payload)
            if self._health is not None and error.kind in ANSWERS:
                self._health.api_answered()  # a 404 or a 400 is the API, there and listening
            raise error
        # 202 Accepted with no body (the Agents API's events): nothing to read, not garbled.
        empty = not read_answer or (response.status in (202, 204) and not payload.strip())
        data = {} if empty else decode(endpoint, payload)
        if self._health is not None:
            self._health.api_answered()
        return Answer(data, poll_hint(response.headers))

    @asynccontextmanager
    async def open_stream(
        self, endpoint: str, path: str, body: dict[str, Any] | None, *, method: str = "POST",
        lane: Lane = Lane.SUBMIT,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request whose answer is read as it arrives (a stream): one request from the budget.

        Errors before the answer started, and ApiErrors raised while it is read, are counted.
        """
        if self._streams is None:
            raise RuntimeError("use ApiClient as 'async with ApiClient(...) as client'")
        await self.budget.acquire(lane)  # the stream is one request; events are free
        started, status = anyio.current_time(), "error"
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._settings.connect_timeout_s,
            sock_read=self._settings.stream_idle_timeout_s,
        )
        try:
            with translate_errors(endpoint, self._settings.stream_idle_timeout_s):
                async with self._streams.request(
                    method, self._profile.url(path), params=self._profile.query(),
                    headers={**await self._profile.headers(), "Accept": "text/event-stream"},
                    json=body, timeout=timeout, allow_redirects=False,
                ) as response:
                    status = f"{response.status // 100}xx"
                    yield response
        except ApiError as error:
            self.count_error(endpoint, error)
            raise
        finally:
            self._count_request(endpoint, status, started)

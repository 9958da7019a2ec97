"""ApiClient: one aiohttp session to the Assistants API; retries, Retry-After, errors -> ApiError."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio
import structlog

from . import ids
from .errors import (
    ApiConnectionError,
    ApiError,
    ApiStatusError,
    ApiTimeout,
    AuthError,
    NotFound,
    RateLimited,
    RunNotActionable,
)
from .models import Run, ToolOutput

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import TracebackType

    from .backends import BackendProfile
    from .config import ApiSettings
    from .metrics import Metrics

__all__ = ["ApiClient", "RequestBudget", "RetryPolicy"]

log = structlog.get_logger("worker.client")

# Where the client keeps the API's `openai-poll-after-ms` hint beside an answer's fields.
POLL_AFTER_KEY = "__poll_after_ms"

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryPolicy:
    """Capped exponential backoff with full jitter; ``Retry-After`` wins when the API sends it."""

    def __init__(
        self, max_retries: int, *, base_s: float = 0.25, cap_s: float = 8.0, seed: int | None = None
    ) -> None:
        self.max_retries = max_retries
        self.base_s = base_s
        self.cap_s = cap_s
        self._random = random.Random(seed)  # noqa: S311 - jitter, not cryptography

    def delay_s(self, attempt: int, error: ApiError) -> float:
        if isinstance(error, RateLimited) and error.retry_after_s is not None:
            return min(error.retry_after_s, 60.0)
        return self._random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))

    @staticmethod
    def is_retryable(error: ApiError) -> bool:
        if isinstance(error, ApiStatusError):
            return error.status in RETRYABLE_STATUSES
        return isinstance(error, ApiConnectionError | ApiTimeout)


class RequestBudget:
    """At most ``per_s`` requests in any one-second window: a sliding log of send times.

    A token bucket would allow a burst of twice the rate across a window boundary; the log
    does not. The window carries a small margin, since the API sees our requests with jitter.
    """

    WINDOW_S = 1.05

    def __init__(self, per_s: int) -> None:
        self.per_s = per_s
        self._sent: deque[float] = deque()
        self._lock: anyio.Lock | None = None  # made on first use, inside the event loop
        self.waited_s = 0.0

    async def acquire(self) -> None:
        """Wait until one more request fits in the budget, then count it."""
        if self.per_s <= 0:
            return
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:  # first come, first served
            now = anyio.current_time()
            self._expire(now)
            if len(self._sent) >= self.per_s:
                delay_s = self._sent[0] + self.WINDOW_S - now
                self.waited_s += delay_s
                await anyio.sleep(delay_s)
                now = anyio.current_time()
                self._expire(now)
            self._sent.append(now)

    def _expire(self, now: float) -> None:
        while self._sent and now - self._sent[0] >= self.WINDOW_S:
            self._sent.popleft()


class ApiClient:
    """The Assistants API endpoints the worker uses, over one pooled aiohttp session.

    Use it as ``async with ApiClient(...) as client``. Every method raises only ``ApiError``.
    """

    def __init__(
        self,
        profile: BackendProfile,
        settings: ApiSettings,
        metrics: Metrics,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._profile = profile
        self._settings = settings
        self._metrics = metrics
        self._retry = retry or RetryPolicy(settings.max_retries)
        self.budget = RequestBudget(settings.max_requests_per_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._settings.max_connections),
            timeout=aiohttp.ClientTimeout(
                total=self._settings.request_timeout_s, connect=self._settings.connect_timeout_s
            ),
            json_serialize=json.dumps,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._profile.aclose()

    async def retrieve_run(self, thread_id: str, run_id: str, *, prepaid: bool = False) -> Run:
        """The run as it is now; ``prepaid``: the caller took this request from the budget."""
        data = await self._request(
            "GET", "retrieve_run",
            ids.path("/threads/{thread_id}/runs/{run_id}", thread_id=thread_id, run_id=run_id),
            prepaid=prepaid,
        )
        return _run(data)

    async def list_runs(
        self, thread_id: str, *, limit: int = 1, order: str = "desc", prepaid: bool = False
    ) -> list[Run]:
        """The thread's runs, newest first by default; ``limit=1`` finds the active one."""
        data = await self._request(
            "GET", "list_runs", ids.path("/threads/{thread_id}/runs", thread_id=thread_id),
            params={"limit": limit, "order": order}, prepaid=prepaid,
        )
        hint = data.get(POLL_AFTER_KEY)
        return [_run({**item, POLL_AFTER_KEY: hint}) for item in data.get("data") or []]

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
        data = await self._request(
            "POST",
            "submit_tool_outputs",
            ids.path("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
                     thread_id=thread_id, run_id=run_id),
            body=body,
            deadline=deadline,
        )
        return _run(data)

    async def list_threads(
        self, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[str], str | None]:
        """One page of thread ids, and the cursor of the next page (None on the last)."""
        params: dict[str, Any] = {"limit": limit, "order": "asc"}
        if after is not None:
            params["after"] = after
        data = await self._request("GET", "list_threads", "/threads", params=params)
        ids = [str(item["id"]) for item in data.get("data") or [] if "id" in item]
        return ids, (ids[-1] if data.get("has_more") and ids else None)

    async def list_assistants(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """The key's assistants; the worker calls it at start to check the key."""
        data = await self._request("GET", "list_assistants", "/assistants", params={"limit": limit})
        return list(data.get("data") or [])

    async def retrieve_assistant(self, assistant_id: str) -> dict[str, Any]:
        """The assistant object as the API shows it (``tools`` among its fields).

        Raises:
            NotFound: no such assistant for this key.
        """
        return await self._request(
            "GET", "retrieve_assistant",
            ids.path("/assistants/{assistant_id}", assistant_id=assistant_id),
        )

    async def modify_assistant(self, assistant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change the fields of the assistant given in ``body``; returns the updated assistant."""
        return await self._request(
            "POST", "modify_assistant",
            ids.path("/assistants/{assistant_id}", assistant_id=assistant_id),
            body=body,
        )

    async def cancel_run(self, thread_id: str, run_id: str) -> Run:
        data = await self._request(
            "POST", "cancel_run",
            ids.path("/threads/{thread_id}/runs/{run_id}/cancel", thread_id=thread_id, run_id=run_id),
        )
        return _run(data)

    async def _request(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        deadline: float | None = None,
        prepaid: bool = False,
    ) -> dict[str, Any]:
        attempt = 0
        maybe_applied = False
        while True:
            if not prepaid or attempt > 0:  # retries always pay
                await self.budget.acquire()
            try:
                return await self._request_once(method, endpoint, path, params, body, deadline)
            except RunNotActionable as error:
                self._metrics.api_errors.labels(endpoint, "run_not_actionable").inc()
                # The API answers 400 to a repeated submit, so a 400 after an attempt whose
                # answer was lost may mean that attempt was applied: say so to the caller.
                error.after_lost_answer = maybe_applied
                raise
            except ApiError as error:
                self._metrics.api_errors.labels(endpoint, _error_kind(error)).inc()
                if attempt >= self._retry.max_retries or not self._retry.is_retryable(error):
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

    async def _request_once(
        self,
        method: str,
        endpoint: str,
        path: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        deadline: float | None,
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("use ApiClient as 'async with ApiClient(...) as client'")
        timeout_s = self._settings.request_timeout_s
        if deadline is not None:
            timeout_s = min(timeout_s, max(deadline - anyio.current_time(), 0.001))
        started = anyio.current_time()
        status = "error"
        query = self._profile.query()
        try:
            with _translate_errors(endpoint, timeout_s):
                async with self._session.request(
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
                    payload = await response.read()
                    if response.status >= 400:
                        raise _status_error(endpoint, response, payload)
                    data = _decode(endpoint, payload)
                    hint = response.headers.get("openai-poll-after-ms")
                    if hint is not None and hint.isdigit():
                        data[POLL_AFTER_KEY] = int(hint)
                    return data
        finally:
            self._metrics.api_requests.labels(endpoint, status).inc()
            self._metrics.api_request_duration.labels(endpoint).observe(
                anyio.current_time() - started
            )


@contextmanager
def _translate_errors(endpoint: str, timeout_s: float) -> Iterator[None]:
    """The one place where aiohttp's and asyncio's exceptions become ``ApiError``."""
    try:
        yield
    except TimeoutError as exc:
        raise ApiTimeout(endpoint, timeout_s) from exc
    except aiohttp.ClientError as exc:
        raise ApiConnectionError(endpoint, type(exc).__name__) from exc


def _error_kind(error: ApiError) -> str:
    """The closed label value of ``toolworker_api_errors_total`` for an error."""
    if isinstance(error, AuthError):
        return "auth"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, ApiStatusError):
        return "server_error" if error.status >= 500 else "client_error"
    return "timeout" if isinstance(error, ApiTimeout) else "connection"


def _run(data: dict[str, Any]) -> Run:
    run = Run.from_json(data)
    hint = data.get(POLL_AFTER_KEY)
    return dataclasses.replace(run, poll_after_ms=hint) if isinstance(hint, int) else run


def _decode(endpoint: str, payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        raise ApiStatusError(200, endpoint, "the answer is not JSON") from None
    if not isinstance(data, dict):
        raise ApiStatusError(200, endpoint, "the answer is not a JSON object")
    return data


def _status_error(endpoint: str, response: aiohttp.ClientResponse, payload: bytes) -> ApiStatusError:
    message, code = _error_fields(payload)
    request_id = response.headers.get("x-request-id")
    status = response.status
    if status in (401, 403):
        return AuthError(status, endpoint, message, request_id=request_id, code=code)
    if status == 404:
        return NotFound(status, endpoint, message, request_id=request_id, code=code)
    if status == 429:
        return RateLimited(
            status, endpoint, message, request_id=request_id, code=code,
            retry_after_s=_retry_after_s(response.headers),
        )
    if status == 400 and endpoint == "submit_tool_outputs":
        return RunNotActionable(status, endpoint, message, request_id=request_id, code=code)
    return ApiStatusError(status, endpoint, message, request_id=request_id, code=code)


def _error_fields(payload: bytes) -> tuple[str, str | None]:
    try:
        error = json.loads(payload).get("error") or {}
        return str(error.get("message") or "no message"), error.get("code")
    except (ValueError, AttributeError):
        return payload[:200].decode("utf-8", "replace") or "no message", None


def _retry_after_s(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(float(value) * scale, 0.0)
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
    return None

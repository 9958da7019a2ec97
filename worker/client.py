"""ApiClient: one aiohttp session to the Assistants API; retries, Retry-After, errors -> ApiError."""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio
import structlog

from . import ids
from .budget import Lane, RequestBudget, RetryPolicy
from .errors import (
    ApiConnectionError,
    ApiError,
    ApiErrorKind,
    ApiStatusError,
    ApiTimeout,
    AuthError,
    BadAnswer,
    NotFound,
    RateLimited,
    RunNotActionable,
)
from .models import Run, ToolOutput

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import TracebackType

    from .backends import BackendProfile
    from .clock import ApiClock
    from .config import ApiSettings
    from .health import Health
    from .metrics import Metrics

log = structlog.get_logger("worker.client")

__all__ = ["Answer", "ApiClient"]


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: the JSON object, and the hint that came beside it."""

    data: dict[str, Any]
    # The API's `openai-poll-after-ms`: when it expects the answer to change, if it said.
    poll_after_ms: int | None = None


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
        self._lasting_reported: set[str] = set()

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
        with self._counted():
            return _run("retrieve_run", answer.data, answer.poll_after_ms, thread_id, run_id)

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
        with self._counted():
            items = _items("list_runs", answer.data)
            return [_run("list_runs", item, answer.poll_after_ms, thread_id) for item in items]

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
        with self._counted():
            return _run("submit_tool_outputs", answer.data, answer.poll_after_ms, thread_id,
                        run_id)

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
        with self._counted():
            items = _items("list_threads", answer.data)
        found: list[object] = [item.get("id") if isinstance(item, dict) else None
                               for item in items]
        thread_ids = [t for t in found if isinstance(t, str) and ids.is_valid_id(t)]
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
        with self._counted():
            items = _items("list_assistants", answer.data)
        return [item for item in items if isinstance(item, dict)]

    async def retrieve_assistant(self, assistant_id: str) -> dict[str, Any]:
        """The assistant object as the API shows it (``tools`` among its fields).

        Raises:
            NotFound: no such assistant for this key.
        """
        answer = await self._request(
            "GET", "retrieve_assistant",
            ids.path("/assistants/{assistant_id}", assistant_id=assistant_id),
        )
        with self._counted():
            return _assistant("retrieve_assistant", answer.data)

    async def modify_assistant(self, assistant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change the fields of the assistant given in ``body``; returns the updated assistant."""
        answer = await self._request(
            "POST", "modify_assistant",
            ids.path("/assistants/{assistant_id}", assistant_id=assistant_id),
            body=body,
        )
        with self._counted():
            return _assistant("modify_assistant", answer.data)

    async def cancel_run(self, thread_id: str, run_id: str) -> Run:
        answer = await self._request(
            "POST", "cancel_run",
            ids.path("/threads/{thread_id}/runs/{run_id}/cancel", thread_id=thread_id, run_id=run_id),
        )
        with self._counted():
            return _run("cancel_run", answer.data, answer.poll_after_ms, thread_id, run_id)

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
                    method, endpoint, path, params, body, deadline, timeout_s
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

    @contextmanager
    def _counted(self) -> Iterator[None]:
        """Count a BadAnswer found in an answer's fields, as one found in its JSON is."""
        try:
            yield
        except BadAnswer as error:
            self._count_error(error.endpoint, error)
            raise

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
    ) -> Answer:
        if self._session is None:
            raise RuntimeError("use ApiClient as 'async with ApiClient(...) as client'")
        timeout_s = timeout_s or self._settings.request_timeout_s
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
                    return await self._answer(endpoint, response)
        finally:
            self._metrics.api_requests.labels(endpoint, status).inc()
            self._metrics.api_request_duration.labels(endpoint).observe(
                anyio.current_time() - started
            )

    async def _answer(self, endpoint: str, response: aiohttp.ClientResponse) -> Answer:
        if self._clock is not None:
            self._clock.observe(response.headers.get("Date"), time.time())
        payload = await _read_capped(endpoint, response, self._settings.max_response_bytes)
        if response.status >= 400:
            error = _status_error(endpoint, response, payload)
            if self._health is not None and error.kind in _ANSWERS:
                self._health.api_answered()  # a 404 or a 400 is the API, there and listening
            raise error
        data = _decode(endpoint, payload)
        if self._health is not None:
            self._health.api_answered()
        hint = response.headers.get("openai-poll-after-ms", "")
        # isascii: "²".isdigit() is True, and int("²") a ValueError.
        plain = hint.isascii() and hint.isdigit() and len(hint) < 10
        return Answer(data, int(hint) if plain else None)


# Refusals that still show the API is reachable and takes the key.
_ANSWERS = frozenset(
    {ApiErrorKind.NOT_FOUND, ApiErrorKind.RUN_NOT_ACTIONABLE, ApiErrorKind.CLIENT_ERROR}
)


async def _read_capped(endpoint: str, response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, refused unread past ``cap`` bytes: a huge answer must not exhaust memory."""
    declared = response.content_length
    if declared is not None and declared > cap:
        raise BadAnswer(endpoint, f"the answer is {declared} bytes, over [api] "
                                  f"max_response_bytes = {cap}")
    # read(n) returns what has arrived so far, up to n: loop until the end or past the cap.
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await response.content.read(cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > cap:
        raise BadAnswer(endpoint, f"the answer is over [api] max_response_bytes = {cap}")
    return b"".join(chunks)


@contextmanager
def _translate_errors(endpoint: str, timeout_s: float) -> Iterator[None]:
    """The one place where aiohttp's and asyncio's exceptions become ``ApiError``."""
    try:
        yield
    except TimeoutError as exc:
        raise ApiTimeout(endpoint, timeout_s) from exc
    except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
        raise ApiConnectionError(
            endpoint, f"TLS failed for {_where(exc)}: {_os_reason(exc)}", kind=ApiErrorKind.TLS
        ) from exc
    except aiohttp.ClientConnectorDNSError as exc:
        raise ApiConnectionError(
            endpoint, f"cannot resolve the host {_where(exc)}", kind=ApiErrorKind.DNS
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise ApiConnectionError(
            endpoint, f"cannot connect to {_where(exc)}: {_os_reason(exc)}"
        ) from exc
    except aiohttp.ClientError as exc:
        raise ApiConnectionError(endpoint, type(exc).__name__) from exc


def _where(exc: aiohttp.ClientConnectorError) -> str:
    return f"{exc.host}:{exc.port}"


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    return str(exc.os_error.strerror or exc.os_error)


def _run(endpoint: str, data: object, poll_after_ms: int | None, thread_id: str,
         run_id: str | None = None) -> Run:
    """The run in ``data``, which must be ``run_id`` (any run, when None) of ``thread_id``."""
    try:
        run = Run.from_json(data)
    except ValueError as exc:  # Malformed, or InvalidId for an id no API issues
        raise BadAnswer(endpoint, str(exc)) from None
    if run.thread_id != thread_id or run_id not in (None, run.id):
        # A gateway that mixes up answers (a cache keyed wrongly): acting on it would answer
        # another thread's round and leave this thread's watch waiting forever.
        raise BadAnswer(endpoint, f"it is run {run.id!r} of thread {run.thread_id!r}, not "
                                  f"{run_id or 'a run'!r} of thread {thread_id!r} as asked")
    return replace(run, poll_after_ms=poll_after_ms) if poll_after_ms is not None else run


def _assistant(endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` if it has the shape tool sync reads: an id, and tools a list of objects."""
    if not ids.is_valid_id(data.get("id")):
        raise BadAnswer(endpoint, f"the assistant's id is {str(data.get('id'))[:40]!r}")
    tools = data.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(item, dict) for item in tools):
        raise BadAnswer(endpoint, "the assistant's tools are not a list of objects")
    for item in tools:
        function = item.get("function")
        if item.get("type") == "function" and not (
            isinstance(function, dict) and isinstance(function.get("name"), str)
        ):
            raise BadAnswer(endpoint, "a function tool of the assistant has no function name")
    return data


def _items(endpoint: str, data: dict[str, Any]) -> list[Any]:
    items = data.get("data")
    if not isinstance(items, list):
        raise BadAnswer(endpoint, "a list answer without a 'data' list")
    return items


def _decode(endpoint: str, payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        start = payload[:40].decode("utf-8", "replace")
        raise BadAnswer(endpoint, f"not JSON, it starts {start!r}") from None
    if not isinstance(data, dict):
        raise BadAnswer(endpoint, f"not a JSON object but a {type(data).__name__}")
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
        code = error.get("code")
        return str(error.get("message") or "no message")[:500], code if isinstance(code, str) else None
    except (ValueError, AttributeError, RecursionError):
        return payload[:200].decode("utf-8", "replace") or "no message", None


def _retry_after_s(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay_s = float(value) * scale
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
        if math.isfinite(delay_s):
            return max(delay_s, 0.0)
    return None

"""The exceptions of tool-worker, one tree rooted in ``WorkerError``.

::

    WorkerError
    ├── ConfigError              the configuration file or environment is wrong; fix it and restart
    ├── ApiError                 talking to the Assistants API failed
    │   ├── ApiConnectionError   the connection failed or dropped before an answer arrived
    │   ├── ApiTimeout           no answer within the request timeout
    │   ├── BadAnswer            the API answered 2xx with something that does not parse
    │   └── ApiStatusError       the API answered with an error status
    │       ├── AuthError        401/403: the key is missing, wrong or lacks access
    │       ├── RateLimited      429: slow down, honour ``retry_after_s``
    │       ├── NotFound         404: the thread or run does not exist (for this key)
    │       ├── Redirected       3xx: the API points elsewhere; never followed, fix base_url
    │       └── RunNotActionable 400 on submit: the run no longer takes these outputs
    ├── CoordinationError        the coordination store (Redis) failed; rounds wait, none is lost
    ├── WatchStoreError          the watch store (SQLite file, Redis) failed; nothing was committed
    ├── ResourceError            a ``@resource`` failed to start; the worker does not start
    ├── InvalidId                an id from outside is not shaped like one the API issues
    ├── WatchLimitReached        the worker already follows ``[watch] max_threads`` threads
    ├── ToolNotFound             the model called a tool that is not registered
    └── ToolArgumentsError       the model's arguments are not valid JSON or do not fit the hints

``ToolError`` is not a failure of the worker: handlers raise it to send its text to the model.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "ApiErrorKind",
    "ApiStatusError",
    "ApiTimeout",
    "AuthError",
    "BadAnswer",
    "ConfigError",
    "CoordinationError",
    "InvalidId",
    "NotFound",
    "RateLimited",
    "Redirected",
    "ResourceError",
    "RunNotActionable",
    "ToolArgumentsError",
    "ToolError",
    "ToolNotFound",
    "WatchLimitReached",
    "WatchStoreError",
    "WorkerError",
]


class WorkerError(Exception):
    """Base of every error tool-worker raises on purpose."""


class ConfigError(WorkerError):
    """The configuration is invalid; the message names the file and key."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.source = source
        self.key = key
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ApiErrorKind(enum.StrEnum):
    """What went wrong with a request: the closed label set of ``toolworker_api_errors_total``."""

    AUTH = "auth"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    RUN_NOT_ACTIONABLE = "run_not_actionable"
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    DNS = "dns"
    TLS = "tls"
    BAD_ANSWER = "bad_answer"
    REDIRECT = "redirect"


class ApiError(WorkerError):
    """A request to the Assistants API failed."""

    kind: ApiErrorKind = ApiErrorKind.CONNECTION
    # True for failures that the same request sent again at once will meet again (a host
    # that does not resolve, a certificate refused): retried slowly, reported once.
    lasting: bool = False

    def __init__(self, message: str, *, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(message)


class ApiConnectionError(ApiError):
    """The connection failed or was dropped before the answer arrived."""

    def __init__(
        self, endpoint: str, reason: str, *, kind: ApiErrorKind = ApiErrorKind.CONNECTION
    ) -> None:
        self.reason = reason
        self.kind = kind
        self.lasting = kind in (ApiErrorKind.DNS, ApiErrorKind.TLS)
        super().__init__(
            f"{endpoint}: connection to the API failed ({reason}); "
            "check [api] base_url and the network",
            endpoint=endpoint,
        )


class ApiTimeout(ApiError):
    """No answer arrived within the request timeout."""

    kind = ApiErrorKind.TIMEOUT

    def __init__(self, endpoint: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(
            f"{endpoint}: no answer within {timeout_s:g} s; "
            "raise [api] request_timeout_s if the API is slow",
            endpoint=endpoint,
        )


class BadAnswer(ApiError):
    """The API answered with a success status, but the body is not what the endpoint returns.

    Seen behind misbehaving gateways: HTML error pages, truncated JSON, missing fields.
    """

    kind = ApiErrorKind.BAD_ANSWER

    def __init__(self, endpoint: str, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"{endpoint}: the API's answer does not parse ({problem}); "
            "check [api] base_url and any gateway in front of the API",
            endpoint=endpoint,
        )


class ApiStatusError(ApiError):
    """The API answered with an error status."""

    def __init__(
        self,
        status: int,
        endpoint: str,
        message: str,
        *,
        request_id: str | None = None,
        code: str | None = None,
    ) -> None:
        self.status = status
        if type(self).kind is ApiError.kind:  # subclasses name their own kind
            self.kind = ApiErrorKind.SERVER_ERROR if status >= 500 else ApiErrorKind.CLIENT_ERROR
        self.api_message = message
        self.request_id = request_id
        self.code = code
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{endpoint}: HTTP {status}: {message}{suffix}", endpoint=endpoint)


class AuthError(ApiStatusError):
    """The API refused the key (401/403); set OPENAI_API_KEY or [api] api_key_file."""

    kind = ApiErrorKind.AUTH


class RateLimited(ApiStatusError):
    """The API answered 429; wait ``retry_after_s`` before the next request."""

    kind = ApiErrorKind.RATE_LIMITED

    def __init__(
        self,
        status: int,
        endpoint: str,
        message: str,
        *,
        request_id: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(status, endpoint, message, request_id=request_id, code=code)


class NotFound(ApiStatusError):
    """The thread, run or assistant does not exist, or the key cannot see it."""

    kind = ApiErrorKind.NOT_FOUND


class Redirected(ApiStatusError):
    """The API answered 3xx: never followed, since that would send the key and the outputs to
    wherever ``location`` points. Lasting: the same request meets the same redirect."""

    kind = ApiErrorKind.REDIRECT
    lasting = True

    def __init__(self, status: int, endpoint: str, location: str | None) -> None:
        self.location = location
        where = repr(location[:200]) if location else "nowhere (no Location header)"
        super().__init__(
            status, endpoint, f"the API redirects to {where}, which is never followed: set "
            "[api] base_url to the address that answers (no credential was sent there)",
        )


class RunNotActionable(ApiStatusError):
    """The run no longer accepts these tool outputs (it moved on, expired or was cancelled).

    ``after_lost_answer`` is True when an earlier attempt of the same request lost its answer,
    so the refusal may be the API seeing our own outputs a second time.
    """

    kind = ApiErrorKind.RUN_NOT_ACTIONABLE

    def __init__(
        self,
        status: int,
        endpoint: str,
        message: str,
        *,
        request_id: str | None = None,
        code: str | None = None,
        after_lost_answer: bool = False,
    ) -> None:
        self.after_lost_answer = after_lost_answer
        super().__init__(status, endpoint, message, request_id=request_id, code=code)


class CoordinationError(WorkerError):
    """Redis (claims or intake) could not be reached or answered an error."""

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(
            f"{operation}: the coordination store failed ({reason}); "
            "check [coordination] redis_url and that Redis is up"
        )


class WatchStoreError(WorkerError):
    """The watch store could not be read or written; what was asked was not committed."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"the watch store {where} failed ({reason})")


class ResourceError(WorkerError):
    """A ``@resource`` raised while starting; the worker stops before it serves anything."""

    def __init__(self, resource: str, cause: BaseException) -> None:
        self.resource = resource
        self.cause = cause
        super().__init__(f"resource {resource!r} failed to start: "
                         f"{type(cause).__name__}: {cause}")


class InvalidId(WorkerError, ValueError):
    """An id (from intake, config or an API answer) that no Assistants API would issue."""

    def __init__(self, what: str, value: object, *, max_chars: int) -> None:
        self.what = what
        super().__init__(
            f"{what} {repr(value)[:60]} is not an id the API issues: use 1-{max_chars} letters, "
            "digits, '_', '-', '.' or ':', starting with a letter or digit (like 'thread_abc123')"
        )


class WatchLimitReached(WorkerError):
    """A new thread to watch was refused: the worker already follows ``limit`` threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"already watching {limit} threads, the limit; raise [watch] max_threads or run "
            "more replicas"
        )


class ToolNotFound(WorkerError):
    """The model called a tool that no handler is registered for."""

    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name = name
        self.available = sorted(available)
        listed = ", ".join(self.available) or "none"
        super().__init__(f"unknown tool {name!r}; available tools: {listed}")


class ToolArgumentsError(WorkerError):
    """The model's arguments are not valid JSON or do not match the handler's parameters."""

    def __init__(self, tool: str, problem: str) -> None:
        self.tool = tool
        self.problem = problem
        super().__init__(f"invalid arguments for tool {tool!r}: {problem}")


class ToolError(Exception):
    """Raise in a handler to send this message to the model as the tool's output.

    It is control flow, not a failure of the worker, so it is not a ``WorkerError``.
    """

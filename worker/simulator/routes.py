"""HTTP handlers of the simulated API, its auth and beta-header checks, and its error bodies."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from worker.simulator.wire import (
    RequestRefused,
    check_fields,
    check_metadata,
    invalid_type,
    parse_sim_rounds,
    refuse,
)

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Awaitable, Callable, Mapping

    from worker.simulator.faults import Fault, FaultInjector
    from worker.simulator.state import ApiState

__all__ = ["AZURE_API_VERSIONS", "Profile", "build_app"]

Profile = Literal["openai", "azure"]
# The api-version values of Azure AI Foundry Agent Service's data plane: "v1" (stable) and the
# preview the azure-ai-agents SDK defaults to. https://learn.microsoft.com/rest/api/aifoundry/aiagents
AZURE_API_VERSIONS = ("v1", "2025-05-15-preview")

# Tool outputs can be large; aiohttp's default cap of 1 MiB a body would answer 413.
_MAX_BODY_BYTES = 32 * 1024 * 1024

_INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON.)"
)
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_BETA_MISSING = (
    "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try again by "
    "setting the header 'OpenAI-Beta: assistants=v2'."
)
_BETA_V1 = (
    "The v1 Assistants API has been deprecated. Please try again by setting the header "
    "'OpenAI-Beta: assistants=v2'."
)
_SERVER_ERRORS = {
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error"),
    502: ("Bad gateway.", "cf_bad_gateway"),
    503: ("The server is overloaded or not ready yet.", "server_error"),
}

_ASSISTANT_FIELDS = frozenset({
    "model", "name", "description", "instructions", "reasoning_effort", "tools",
    "tool_resources", "metadata", "temperature", "top_p", "response_format",
})
_MESSAGE_FIELDS = frozenset({"role", "content", "attachments", "metadata"})
_THREAD_FIELDS = frozenset({"messages", "tool_resources", "metadata"})
_RUN_OPTIONS = frozenset({
    "model", "instructions", "tools", "metadata", "temperature", "top_p", "stream",
    "max_prompt_tokens", "max_completion_tokens", "truncation_strategy", "tool_choice",
    "parallel_tool_calls", "response_format",
})
_RUN_FIELDS = _RUN_OPTIONS | {
    "assistant_id", "reasoning_effort", "additional_instructions", "additional_messages",
}
_THREAD_AND_RUN_FIELDS = _RUN_OPTIONS | {"assistant_id", "thread", "tool_resources"}


@dataclass(frozen=True, slots=True)
class _Deps:
    state: ApiState
    api_key: str
    require_beta_header: bool
    latency_s: float
    faults: FaultInjector
    request_counts: Counter[str]
    request_times: list[float]
    profile: Profile = "openai"
    api_versions: tuple[str, ...] = AZURE_API_VERSIONS


_DEPS = web.AppKey("deps", _Deps)


def build_app(
    state: ApiState,
    *,
    api_key: str,
    faults: FaultInjector,
    request_counts: Counter[str],
    request_times: list[float] | None = None,
    require_beta_header: bool = True,
    latency_s: float = 0.0,
    profile: Profile = "openai",
    api_versions: tuple[str, ...] = AZURE_API_VERSIONS,
    prefix: str = "/v1",
) -> web.Application:
    """The aiohttp application serving `state` under `prefix`, as the `profile` API would."""
    app = web.Application(middlewares=[_api_middleware], client_max_size=_MAX_BODY_BYTES)
    app[_DEPS] = _Deps(
        state, api_key, require_beta_header and profile == "openai", latency_s, faults,
        request_counts, request_times if request_times is not None else [], profile, api_versions,
    )
    routes = _ROUTES + (_AZURE_ROUTES if profile == "azure" else ())
    for method, path, handler in routes:
        app.router.add_route(method, prefix + path, handler, name=handler.__name__)
    return app


# middleware: auth, beta header, faults, error bodies, request ids


@web.middleware
async def _api_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    deps = request.app[_DEPS]
    endpoint = request.match_info.route.name
    if endpoint is not None:
        deps.request_counts[endpoint] += 1
        deps.request_times.append(time.monotonic())
    if deps.latency_s:
        await asyncio.sleep(deps.latency_s)
    try:
        _check_headers(request, deps)
        if endpoint is None:
            raise RequestRefused(404, f"Invalid URL ({request.method} {request.path})")
        response = await _answer(request, handler, deps.faults.decide(endpoint))
    except RequestRefused as exc:
        response = _error(exc)
    response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
    return response


async def _answer(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    fault: Fault,
) -> web.StreamResponse:
    if fault.latency_s:
        await asyncio.sleep(fault.latency_s)
    if fault.kind == "429":
        return _rate_limited(fault.retry_after_s)
    if fault.kind == "5xx" and fault.status is not None:
        message, error_type = _SERVER_ERRORS[fault.status]
        return _error(RequestRefused(fault.status, message, error_type=error_type))
    if fault.kind == "drop_before":
        return _drop(request)
    try:
        response = await handler(request)
    except RequestRefused as exc:
        response = _error(exc)
    return _drop(request) if fault.kind == "drop_after" else response


def _check_headers(request: web.Request, deps: _Deps) -> None:
    if deps.profile == "azure":
        _check_azure(request, deps)
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise RequestRefused(401, _NO_KEY, code="invalid_api_key")
    if not hmac.compare_digest(token.encode(), deps.api_key.encode()):
        raise RequestRefused(
            401,
            f"Incorrect API key provided: {_mask(token)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    if deps.require_beta_header:
        betas = [part.strip() for part in request.headers.get("OpenAI-Beta", "").split(",")]
        if "assistants=v2" not in betas:
            message = _BETA_V1 if "assistants=v1" in betas else _BETA_MISSING
            raise RequestRefused(400, message, code="invalid_beta")


def _check_azure(request: web.Request, deps: _Deps) -> None:
    """Azure's rules: an `api-key` header or an Entra ID bearer token, and `api-version`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    given = request.headers.get("api-key") or (token.strip() if scheme.lower() == "bearer" else "")
    if not given or not hmac.compare_digest(given.encode(), deps.api_key.encode()):
        raise RequestRefused(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource.",
            code="401",
        )
    version = request.query.get("api-version")
    if version is None:
        raise RequestRefused(
            400, "Missing required query parameter: api-version", code="MissingApiVersionParameter"
        )
    if version not in deps.api_versions:
        raise RequestRefused(
            400,
            f"Unsupported api-version '{version}'. The supported api-versions are "
            f"'{', '.join(deps.api_versions)}'.",
            code="UnsupportedApiVersion",
        )


def _mask(key: str) -> str:
    """Like the API, show only the ends of a wrong key, and nothing of a short one."""
    if len(key) < 12:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def _error(refused: RequestRefused) -> web.Response:
    return web.json_response(refused.body(), status=refused.status)


def _rate_limited(retry_after_s: float) -> web.Response:
    refused = RequestRefused(
        429,
        "Rate limit reached for requests. Please try again in "
        f"{round(retry_after_s * 1000)}ms.",
        error_type="requests",
        code="rate_limit_exceeded",
    )
    response = _error(refused)
    # The spec makes Retry-After a whole number of seconds, at least 1; the ms header is exact.
    response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    response.headers["retry-after-ms"] = str(round(retry_after_s * 1000))
    return response


def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer: the client sees `ServerDisconnectedError`.

    aiohttp then fails to write the returned response and only logs that at debug level.
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=500)


# request parsing


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise refuse(_INVALID_JSON) from None


def _page(request: web.Request) -> dict[str, Any]:
    limit_text = request.query.get("limit", "20")
    try:
        limit = int(limit_text)
    except ValueError:
        raise invalid_type("limit", "an integer", limit_text) from None
    return {
        "limit": limit,
        "order": request.query.get("order", "desc"),
        "after": request.query.get("after"),
        "before": request.query.get("before"),
    }


def _message(body: object, where: str = "") -> dict[str, Any]:
    fields = check_fields(body, _MESSAGE_FIELDS, ["role", "content"], where=where)
    if fields["role"] not in ("user", "assistant"):
        raise refuse(f"Invalid value: '{fields['role']}'. Supported values are: 'user' and "
                     "'assistant'.", param=f"{where}role", code="invalid_value")
    if not isinstance(fields["content"], str | list):
        raise invalid_type(f"{where}content", "a string or an array", fields["content"])
    check_metadata(fields.get("metadata"), f"{where}metadata")
    return fields


def _thread(body: object, where: str = "") -> dict[str, Any]:
    fields = check_fields(body, _THREAD_FIELDS, where=where)
    messages = fields.get("messages") or []
    if not isinstance(messages, list):
        raise invalid_type(f"{where}messages", "an array", messages)
    fields["messages"] = [_message(m, f"{where}messages[{i}].") for i, m in enumerate(messages)]
    check_metadata(fields.get("metadata"), f"{where}metadata")
    return fields


def _run_params(body: object, allowed: frozenset[str]) -> dict[str, Any]:
    fields = check_fields(body, allowed, ["assistant_id"])
    if not isinstance(fields["assistant_id"], str):
        raise invalid_type("assistant_id", "a string", fields["assistant_id"])
    if fields.get("stream"):
        raise refuse("The simulator does not stream: leave 'stream' out or set it to false.",
                     param="stream", code="unsupported_value")
    check_metadata(fields.get("metadata"))
    additional = fields.get("additional_messages") or []
    if not isinstance(additional, list):
        raise invalid_type("additional_messages", "an array", additional)
    fields["additional_messages"] = [
        _message(m, f"additional_messages[{i}].") for i, m in enumerate(additional)
    ]
    return fields


def _ok(data: Mapping[str, Any], request: web.Request | None = None) -> web.Response:
    """200 with `data`; a run answer also carries the API's polling hint."""
    response = web.json_response(data)
    if request is not None and data.get("object") == "thread.run":
        poll_after_ms = request.app[_DEPS].state.poll_after_ms(data["id"])
        if poll_after_ms is not None:
            response.headers["openai-poll-after-ms"] = str(poll_after_ms)
    return response


def _state(request: web.Request) -> ApiState:
    return request.app[_DEPS].state


# handlers; each is named after its endpoint, which names its route, counter and fault rule


async def create_assistant(request: web.Request) -> web.Response:
    body = check_fields(await _read_json(request), _ASSISTANT_FIELDS, ["model"])
    check_metadata(body.get("metadata"))
    return _ok(_state(request).create_assistant(body))


async def list_assistants(request: web.Request) -> web.Response:
    return _ok(_state(request).list_assistants(**_page(request)))


async def retrieve_assistant(request: web.Request) -> web.Response:
    return _ok(_state(request).retrieve_assistant(request.match_info["assistant_id"]))


async def modify_assistant(request: web.Request) -> web.Response:
    body = check_fields(await _read_json(request), _ASSISTANT_FIELDS)
    check_metadata(body.get("metadata"))
    return _ok(_state(request).modify_assistant(request.match_info["assistant_id"], body))


async def create_thread(request: web.Request) -> web.Response:
    body = _thread(await _read_json(request))
    return _ok(_state(request).create_thread(body["messages"], body.get("metadata")))


async def retrieve_thread(request: web.Request) -> web.Response:
    return _ok(_state(request).retrieve_thread(request.match_info["thread_id"]))


async def create_message(request: web.Request) -> web.Response:
    body = _message(await _read_json(request))
    return _ok(_state(request).create_message(request.match_info["thread_id"], body))


async def list_messages(request: web.Request) -> web.Response:
    thread_id = request.match_info["thread_id"]
    run_id = request.query.get("run_id")
    return _ok(_state(request).list_messages(thread_id, run_id, **_page(request)))


async def create_run(request: web.Request) -> web.Response:
    body = _run_params(await _read_json(request), _RUN_FIELDS)
    return _ok(_state(request).create_run(request.match_info["thread_id"], body), request)


async def list_runs(request: web.Request) -> web.Response:
    return _ok(_state(request).list_runs(request.match_info["thread_id"], **_page(request)))


async def retrieve_run(request: web.Request) -> web.Response:
    thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
    return _ok(_state(request).retrieve_run(thread_id, run_id), request)


async def cancel_run(request: web.Request) -> web.Response:
    thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
    return _ok(_state(request).cancel_run(thread_id, run_id), request)


async def submit_tool_outputs(request: web.Request) -> web.Response:
    state = _state(request)
    thread_id, run_id = request.match_info["thread_id"], request.match_info["run_id"]
    try:
        body = await _read_json(request)
    except RequestRefused as exc:
        state.record_submission(thread_id, run_id, None, None, exc)
        raise
    return _ok(state.submit_tool_outputs(thread_id, run_id, body), request)


async def list_threads(request: web.Request) -> web.Response:
    return _ok(_state(request).list_threads(**_page(request)))


async def create_thread_and_run(request: web.Request) -> web.Response:
    state = _state(request)
    body = _run_params(await _read_json(request), _THREAD_AND_RUN_FIELDS)
    thread_body = _thread(body.pop("thread", None) or {}, "thread.")
    # Check everything create_run would refuse before the thread exists.
    state.retrieve_assistant(body["assistant_id"])
    parse_sim_rounds((body.get("metadata") or {}).get("sim_rounds"))
    thread = state.create_thread(thread_body["messages"], thread_body.get("metadata"))
    return _ok(state.create_run(thread["id"], body), request)


_ROUTES: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]], ...] = (
    ("POST", "/assistants", create_assistant),
    ("GET", "/assistants", list_assistants),
    ("GET", "/assistants/{assistant_id}", retrieve_assistant),
    ("POST", "/assistants/{assistant_id}", modify_assistant),
    ("POST", "/threads", create_thread),
    # Registered before /threads/{thread_id}/... so that "runs" is never taken for a thread id.
    ("POST", "/threads/runs", create_thread_and_run),
    ("GET", "/threads/{thread_id}", retrieve_thread),
    ("POST", "/threads/{thread_id}/messages", create_message),
    ("GET", "/threads/{thread_id}/messages", list_messages),
    ("POST", "/threads/{thread_id}/runs", create_run),
    ("GET", "/threads/{thread_id}/runs", list_runs),
    ("GET", "/threads/{thread_id}/runs/{run_id}", retrieve_run),
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel", cancel_run),
    ("POST", "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", submit_tool_outputs),
)
# Agent Service extras: it lists threads, which the OpenAI API never did.
_AZURE_ROUTES: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]], ...] = (
    ("GET", "/threads", list_threads),
)

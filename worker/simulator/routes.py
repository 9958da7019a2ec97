"""The simulated API's aiohttp app: its routes, auth and beta-header checks, faults, error bodies."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import math
import time
import uuid
from typing import TYPE_CHECKING

from aiohttp import web

from worker.simulator.agents_routes import AGENT_ENDPOINTS, AGENT_ROUTES
from worker.simulator.agents_stream import AGENTS
from worker.simulator.assistant_routes import ASSISTANT_ROUTES
from worker.simulator.faults import STREAM_FAULTS
from worker.simulator.replies import AZURE_API_VERSIONS, DEPS, Deps, Profile, error, state_of
from worker.simulator.run_routes import RUN_ROUTES
from worker.simulator.streaming import REQUEST_FAULT, REQUEST_ID
from worker.simulator.thread_routes import AZURE_THREAD_ROUTES, THREAD_ROUTES
from worker.simulator.wire import RequestRefused

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Awaitable, Callable

    from worker.simulator.agents_state import AgentsState
    from worker.simulator.faults import Fault, FaultInjector
    from worker.simulator.spec import RequestSchemas
    from worker.simulator.state import ApiState

__all__ = ["AZURE_API_VERSIONS", "Profile", "build_app"]

# Tool outputs can be large; aiohttp's default cap of 1 MiB a body would answer 413.
_MAX_BODY_BYTES = 32 * 1024 * 1024

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
_AGENTS_BETA_MISSING = (
    "You must provide the 'OpenAI-Beta' header to access the Agents API. Please try again by "
    "setting the header 'OpenAI-Beta: agents=v1'."
)
_SERVER_ERRORS = {
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error"),
    502: ("Bad gateway.", "cf_bad_gateway"),
    503: ("The server is overloaded or not ready yet.", "server_error"),
}

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
    schemas: RequestSchemas | None = None,
    refused_threads: set[str] | None = None,
    agents: AgentsState | None = None,
) -> web.Application:
    """The aiohttp application serving `state` under `prefix`, as the `profile` API would.

    With `schemas`, every request body is also checked against the OpenAPI document; with
    `agents` (openai profile only), the Agents API is served too.
    """
    app = web.Application(middlewares=[_api_middleware], client_max_size=_MAX_BODY_BYTES)
    app[DEPS] = Deps(
        state, api_key, require_beta_header and profile == "openai", latency_s, faults,
        request_counts, request_times if request_times is not None else [], profile, api_versions,
        prefix, schemas, refused_threads if refused_threads is not None else set(),
    )
    # POST /threads/runs comes before /threads/{thread_id} so "runs" is never taken for an id.
    routes: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]], ...]
    routes = RUN_ROUTES + ASSISTANT_ROUTES + THREAD_ROUTES
    if profile == "azure":
        routes += AZURE_THREAD_ROUTES
    elif agents is not None:
        app[AGENTS] = agents
        routes = AGENT_ROUTES + routes
    for method, path, handler in routes:
        app.router.add_route(method, prefix + path, handler, name=handler.__name__)
    # The simulator's own window on what it was told, outside the API's prefix (see run_script).
    app.router.add_get("/_sim/runs/{run_id}/outputs", sim_run_outputs, name="sim_run_outputs")
    return app


async def sim_run_outputs(request: web.Request) -> web.Response:
    """GET /_sim/runs/{run_id}/outputs: the outputs the run took, round by round."""
    run = state_of(request).run_record(request.match_info["run_id"])
    return web.json_response({
        "run_id": run.id, "thread_id": run.thread_id, "status": run.status,
        "outputs": [{"round": index + 1, "tool": name, "output": output}
                    for index, name, output in run.outputs],
    })


# middleware: auth, beta header, faults, error bodies, request ids


@web.middleware
async def _api_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    deps = request.app[DEPS]
    request_id = f"req_{uuid.uuid4().hex}"
    REQUEST_ID.set(request_id)
    endpoint = request.match_info.route.name
    if endpoint is not None:
        deps.request_counts[endpoint] += 1
        deps.request_times.append(time.monotonic())
    if deps.latency_s:
        await asyncio.sleep(deps.latency_s)
    try:
        # /_sim/ takes the key but not the beta header: `curl -H "Authorization: Bearer ..."`.
        _check_headers(request, dataclasses.replace(deps, require_beta_header=False)
                       if request.path.startswith("/_sim/") else deps)
        if request.match_info.get("thread_id") in deps.refused_threads:
            raise RequestRefused(403, "You do not have access to this thread with this key.",
                                 error_type="invalid_request_error", code="permission_denied")
        if endpoint is None:
            raise RequestRefused(404, f"Invalid URL ({request.method} {request.path})")
        if deps.schemas is not None:
            _check_query(request, deps.schemas, deps.prefix)
        response = await _answer(request, handler, deps.faults.decide(endpoint))
    except RequestRefused as exc:
        response = error(exc)
    if not response.prepared:  # a stream sent its headers, the request id among them
        response.headers["x-request-id"] = request_id
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
        return error(RequestRefused(fault.status, message, error_type=error_type))
    if fault.kind == "drop_before":
        return _drop(request)
    # For a stream handler; any other request ignores it.
    REQUEST_FAULT.set(fault if fault.kind in STREAM_FAULTS else None)
    try:
        response = await handler(request)
    except RequestRefused as exc:
        response = error(exc)
    if fault.kind == "drop_after":
        dropped = _drop(request)
        # A stream already went out whole: only its connection is closed uncleanly.
        return response if response.prepared else dropped
    return response


def _check_query(request: web.Request, schemas: RequestSchemas, prefix: str) -> None:
    resource = request.match_info.route.resource
    template = "" if resource is None else resource.canonical.removeprefix(prefix)
    names = [name for name in request.query if name != "api-version"]  # azure's, checked apart
    query = {name: request.query.getall(name) for name in names}
    schemas.check_query(request.method, template, query)


def _check_headers(request: web.Request, deps: Deps) -> None:
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
        if request.match_info.route.name in AGENT_ENDPOINTS:
            if "agents=v1" not in betas:
                raise RequestRefused(400, _AGENTS_BETA_MISSING, code="invalid_beta")
        elif "assistants=v2" not in betas:
            message = _BETA_V1 if "assistants=v1" in betas else _BETA_MISSING
            raise RequestRefused(400, message, code="invalid_beta")


def _check_azure(request: web.Request, deps: Deps) -> None:
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


def _rate_limited(retry_after_s: float) -> web.Response:
    refused = RequestRefused(
        429,
        "Rate limit reached for requests. Please try again in "
        f"{round(retry_after_s * 1000)}ms.",
        error_type="requests",
        code="rate_limit_exceeded",
    )
    response = error(refused)
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

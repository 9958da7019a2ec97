"""Redirects from the API are never followed: no key, org/project header or body leaves.

A real loopback "API" answers 307 (or 301/302/308) pointing at a second loopback server on
another port, which records everything it receives. For every backend and every kind of
request (a poll, a submission, a streamed submission), the second server must receive
nothing, and the client must fail with one clear, counted ``Redirected`` error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from tests.conftest import ServedApp
from worker.api.backends import build_profile
from worker.api.client import ApiClient
from worker.api.retry import RetryPolicy
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import ApiErrorKind, Redirected
from worker.models import CallOutcome, ToolOutput
from worker.observability.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

KEY = "sk-redirect-test-0123456789abcdef"
AZURE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
BACKENDS: dict[str, dict[str, Any]] = {
    "openai": {"backend": "openai", "organization": "org-secret-org", "project": "proj_secret"},
    "azure": {"backend": "azure", "azure_auth": "api_key"},
}


def recorder(seen: list[dict[str, Any]]) -> web.Application:
    """The other origin: records each request it gets, headers and body."""

    async def record(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "headers": dict(request.headers),
                     "body": await request.read()})
        return web.json_response({"id": "run_1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return app


def redirector(target: str, status: int) -> web.Application:
    """The API: every request is answered ``status`` with a Location on ``target``."""

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": f"{target}{request.path_qs}"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app


def make_client(base_url: str, backend: str, metrics: Metrics) -> ApiClient:
    settings = ApiSettings(base_url=f"{base_url}/v1", max_retries=2, **BACKENDS[backend])
    key = KEY if backend == "openai" else AZURE_KEY
    return ApiClient(build_profile(settings, Secret(key)), settings, metrics,
                     retry=RetryPolicy(2, base_s=0.001))


OUTPUTS = [ToolOutput("call_1", "the secret output 42", "add", CallOutcome.OK, 0.01)]
REQUESTS: dict[str, Callable[[ApiClient], Awaitable[object]]] = {
    "poll": lambda client: client.retrieve_run("thread_1", "run_1"),
    "list": lambda client: client.list_runs("thread_1"),
    "submit": lambda client: client.submit_tool_outputs("thread_1", "run_1", OUTPUTS),
    "stream": lambda client: client.submit_tool_outputs_streaming("thread_1", "run_1", OUTPUTS),
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("request_kind", sorted(REQUESTS))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_a_redirect_to_another_port_receives_nothing(
    backend: str, request_kind: str, status: int
) -> None:
    """The other port gets no request at all; the error names the location and is counted
    as kind "redirect", once (a redirect is not retried: it will be there next time)."""
    seen: list[dict[str, Any]] = []
    metrics = Metrics()
    async with (
        ServedApp(recorder(seen)) as other,
        ServedApp(redirector(other.url, status)) as api,
        make_client(api.url, backend, metrics) as client,
    ):
        with pytest.raises(Redirected) as caught:
            await REQUESTS[request_kind](client)
    assert seen == []
    error = caught.value
    assert error.kind is ApiErrorKind.REDIRECT
    assert other.url in str(error)
    assert "never followed" in str(error)
    assert KEY not in str(error)
    endpoint = error.endpoint
    counted = metrics.registry.get_sample_value(
        "toolworker_api_errors_total", {"endpoint": endpoint, "kind": "redirect"})
    assert counted == 1

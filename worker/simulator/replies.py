"""What every handler shares: the app's dependencies, reading a request, writing an answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from worker.simulator.wire import RequestRefused, invalid_type, refuse

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Mapping

    from worker.simulator.faults import FaultInjector
    from worker.simulator.spec import RequestSchemas
    from worker.simulator.state import ApiState

__all__ = [
    "AZURE_API_VERSIONS",
    "DEPS",
    "Deps",
    "Profile",
    "error",
    "ok",
    "page",
    "read_json",
    "state_of",
]

Profile = Literal["openai", "azure"]
# The api-version values of Azure AI Foundry Agent Service's data plane: "v1" (stable) and the
# preview the azure-ai-agents SDK defaults to. https://learn.microsoft.com/rest/api/aifoundry/aiagents
AZURE_API_VERSIONS = ("v1", "2025-05-15-preview")

_INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON.)"
)


@dataclass(frozen=True, slots=True)
class Deps:
    """What the handlers of one app use: the account, its checks, faults and counters."""

    state: ApiState
    api_key: str
    require_beta_header: bool
    latency_s: float
    faults: FaultInjector
    request_counts: Counter[str]
    request_times: list[float]
    profile: Profile = "openai"
    api_versions: tuple[str, ...] = AZURE_API_VERSIONS
    prefix: str = "/v1"
    schemas: RequestSchemas | None = None
    # Threads the key may not read (a key scoped to some threads): their requests answer 403.
    refused_threads: set[str] = field(default_factory=set)


DEPS = web.AppKey("deps", Deps)


def state_of(request: web.Request) -> ApiState:
    """The account the request is served from."""
    return request.app[DEPS].state


async def read_json(request: web.Request) -> Any:
    """The JSON body (`{}` when empty), checked against the spec's request schema if loaded."""
    raw = await request.read()
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise refuse(_INVALID_JSON) from None
    deps = request.app[DEPS]
    if deps.schemas is not None:
        resource = request.match_info.route.resource
        template = "" if resource is None else resource.canonical
        deps.schemas.check(request.method, template.removeprefix(deps.prefix), body)
    return body


def page(request: web.Request) -> dict[str, Any]:
    """The `limit`, `order`, `after` and `before` query parameters of a list request."""
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


def error(refused: RequestRefused) -> web.Response:
    """The API's error body with the refusal's status."""
    return web.json_response(refused.body(), status=refused.status)


def ok(data: Mapping[str, Any], request: web.Request | None = None) -> web.Response:
    """200 with `data`; a run answer also carries the API's polling hint."""
    response = web.json_response(data)
    if request is not None and data.get("object") == "thread.run":
        poll_after_ms = state_of(request).poll_after_ms(data["id"])
        if poll_after_ms is not None:
            response.headers["openai-poll-after-ms"] = str(poll_after_ms)
    return response

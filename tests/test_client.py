"""The API client against tiny aiohttp apps: headers, parsing, retries, and only ApiError escapes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from aiohttp import web

from tests.conftest import ServedApp
from worker.api.backends import build_profile
from worker.api.budget import RequestBudget
from worker.api.client import ApiClient
from worker.api.retry import RetryPolicy
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import (
    ApiConnectionError,
    ApiStatusError,
    ApiTimeout,
    AuthError,
    BadAnswer,
    NotFound,
    RateLimited,
    RunNotActionable,
)
from worker.models import RunStatus, ToolOutput
from worker.observability.metrics import Metrics

KEY = "sk-test-abcdefghijklmnop"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def run_json(status: str = "requires_action", **extra: Any) -> dict[str, Any]:
    return {
        "id": "run_1", "object": "thread.run", "thread_id": "thread_1", "assistant_id": "asst_1",
        "status": status, "expires_at": 2_000_000_000,
        "required_action": {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "add", "arguments": '{"a": 1}'}}]}},
        **extra,
    }


def make_client(url: str, *, retries: int = 3, timeout_s: float = 5.0) -> ApiClient:
    settings = ApiSettings(base_url=f"{url}/v1", request_timeout_s=timeout_s, max_retries=retries)
    profile = build_profile(settings, Secret(KEY))
    return ApiClient(profile, settings, Metrics(), retry=RetryPolicy(retries, base_s=0.001))


def app_with(handler: Handler, path: str = "/v1/threads/thread_1/runs/run_1",
             method: str = "GET") -> web.Application:
    app = web.Application()
    app.router.add_route(method, path, handler)
    return app


async def test_requests_carry_auth_and_beta_headers() -> None:
    """Every request sends the bearer key and OpenAI-Beta: assistants=v2."""
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response(run_json())

    async with ServedApp(app_with(handler)) as server, make_client(server.url) as client:
        run = await client.retrieve_run("thread_1", "run_1")
    assert seen[0]["Authorization"] == f"Bearer {KEY}"
    assert seen[0]["OpenAI-Beta"] == "assistants=v2"
    assert run.status is RunStatus.REQUIRES_ACTION
    assert run.wants_tool_outputs
    assert run.tool_calls[0].name == "add"


async def test_odd_but_legal_runs_parse() -> None:
    """Unknown fields, unknown statuses, null fields and other action types do not break parsing."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(run_json(
            "some_future_status", surprise={"x": 1}, required_action=None, expires_at=None))

    async with ServedApp(app_with(handler)) as server, make_client(server.url) as client:
        run = await client.retrieve_run("thread_1", "run_1")
    assert run.status is RunStatus.UNKNOWN
    assert run.tool_calls == ()
    assert run.expires_at is None
    assert not run.wants_tool_outputs


async def test_submit_sends_exactly_the_outputs() -> None:
    """The body holds only tool_outputs with tool_call_id and output."""
    bodies: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response(run_json("queued", required_action=None))

    app = app_with(handler, "/v1/threads/thread_1/runs/run_1/submit_tool_outputs", "POST")
    async with ServedApp(app) as server, make_client(server.url) as client:
        run = await client.submit_tool_outputs(
            "thread_1", "run_1", [ToolOutput("call_1", "2", "add", "ok", 0.01)])
    assert bodies == [{"tool_outputs": [{"tool_call_id": "call_1", "output": "2"}]}]
    assert run.status is RunStatus.QUEUED


async def test_server_errors_are_retried_until_success() -> None:
    """503 then 502 then 200: the client retries and returns the answer."""
    answers = [503, 502, 200]

    async def handler(request: web.Request) -> web.Response:
        status = answers.pop(0)
        if status != 200:
            return web.json_response({"error": {"message": "overloaded"}}, status=status)
        return web.json_response(run_json())

    async with ServedApp(app_with(handler)) as server, make_client(server.url) as client:
        run = await client.retrieve_run("thread_1", "run_1")
        retries = client._metrics.registry.get_sample_value(
            "toolworker_api_retries_total", {"endpoint": "retrieve_run"})
    assert run.id == "run_1"
    assert answers == []
    assert retries == 2


async def test_rate_limit_honours_retry_after_ms() -> None:
    """A 429 with retry-after-ms waits that long (not more than a little) and retries."""
    times: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        times.append(anyio.current_time())
        if len(times) == 1:
            return web.json_response({"error": {"message": "slow down"}}, status=429,
                                     headers={"retry-after-ms": "300"})
        return web.json_response(run_json())

    async with ServedApp(app_with(handler)) as server, make_client(server.url) as client:
        await client.retrieve_run("thread_1", "run_1")
    assert times[1] - times[0] >= 0.3


@pytest.mark.parametrize(
    ("status", "error", "method", "path"),
    [
        (401, AuthError, "GET", "/v1/threads/thread_1/runs/run_1"),
        (404, NotFound, "GET", "/v1/threads/thread_1/runs/run_1"),
        (400, RunNotActionable, "POST", "/v1/threads/thread_1/runs/run_1/submit_tool_outputs"),
        (422, ApiStatusError, "GET", "/v1/threads/thread_1/runs/run_1"),
    ],
)
async def test_client_errors_are_not_retried(
    status: int, error: type[Exception], method: str, path: str
) -> None:
    """4xx answers raise their typed error after one request, with the API's message."""
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        body = {"error": {"message": "Runs in status \"completed\" do not accept tool outputs.",
                          "code": None}}
        return web.json_response(body, status=status, headers={"x-request-id": "req_42"})

    async with ServedApp(app_with(handler, path, method)) as server, make_client(server.url) as c:
        request = (
            c.submit_tool_outputs("thread_1", "run_1", [])
            if method == "POST"
            else c.retrieve_run("thread_1", "run_1")
        )
        with pytest.raises(error) as info:
            await request
    assert calls == 1
    assert "do not accept tool outputs" in str(info.value)
    assert "req_42" in str(info.value)
    assert KEY not in str(info.value)


async def test_refused_connection_is_an_api_connection_error() -> None:
    """Nothing listening: ApiConnectionError after the retries, never an aiohttp exception."""
    async with ServedApp(web.Application()) as server:
        url = server.url
    async with make_client(url, retries=1) as client:
        with pytest.raises(ApiConnectionError, match="connection to the API failed"):
            await client.retrieve_run("thread_1", "run_1")


async def test_slow_answer_is_an_api_timeout() -> None:
    """An answer slower than request_timeout_s raises ApiTimeout."""
    client_gave_up = anyio.Event()

    async def handler(request: web.Request) -> web.Response:
        # Held until the client has given up; the server's cleanup then need not wait for it.
        await client_gave_up.wait()
        return web.json_response(run_json())

    async with (
        ServedApp(app_with(handler)) as server,
        make_client(server.url, retries=0, timeout_s=0.2) as client,
    ):
        try:
            with pytest.raises(ApiTimeout, match="no answer within 0.2 s"):
                await client.retrieve_run("thread_1", "run_1")
        finally:
            client_gave_up.set()


async def test_dropped_connection_is_retried() -> None:
    """A connection closed without an answer is retried like a 5xx."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return web.json_response(run_json())

    async with ServedApp(app_with(handler)) as server, make_client(server.url) as client:
        run = await client.retrieve_run("thread_1", "run_1")
    assert (calls, run.id) == (2, "run_1")


async def test_non_json_answer_is_an_api_error() -> None:
    """A 200 whose body is not JSON raises BadAnswer naming the endpoint."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html>gateway</html>")

    async with ServedApp(app_with(handler)) as server, make_client(server.url) as client:
        with pytest.raises(BadAnswer, match="retrieve_run: .*not JSON"):
            await client.retrieve_run("thread_1", "run_1")


@pytest.mark.parametrize("key", [KEY, "sk-proj-CANARY0123456789abcdefghijklmnopqrstuvwxyzAB"])
async def test_a_non_json_answer_reflecting_a_key_quotes_none_of_it(key: str) -> None:
    """The quote of a body that is not JSON is redacted before it is cut: a key glued to a
    word and cut at the quote's end was kept, short of its last characters."""
    body = "x" + key + "abcdefghijklmnopqrstuvwxyz" * 4

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body)

    async with ServedApp(app_with(handler)) as server, make_client(server.url) as client:
        with pytest.raises(BadAnswer) as raised:
            await client.retrieve_run("thread_1", "run_1")
    assert "not JSON, it starts 'x***" in str(raised.value)
    assert key[:8] not in str(raised.value)


async def test_retries_stop_at_the_deadline() -> None:
    """A submit is not retried past its deadline."""
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"error": {"message": "busy"}}, status=429,
                                 headers={"retry-after": "10"})

    app = app_with(handler, "/v1/threads/thread_1/runs/run_1/submit_tool_outputs", "POST")
    async with ServedApp(app) as server, make_client(server.url) as client:
        with pytest.raises(RateLimited):
            await client.submit_tool_outputs(
                "thread_1", "run_1", [], deadline=anyio.current_time() + 1.0)
    assert calls == 1


async def test_list_runs_passes_order_and_limit() -> None:
    """list_runs asks for the newest run first."""
    queries: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        queries.append(dict(request.query))
        return web.json_response({"object": "list", "data": [run_json()], "has_more": False})

    app = app_with(handler, "/v1/threads/thread_1/runs")
    async with ServedApp(app) as server, make_client(server.url) as client:
        runs = await client.list_runs("thread_1")
    assert queries == [{"limit": "1", "order": "desc"}]
    assert [r.id for r in runs] == ["run_1"]
    assert json.dumps(queries)


async def test_the_request_budget_holds_in_every_one_second_window() -> None:
    """With a budget of 20 per second, no 20 requests out of 50 fit in one second."""
    budget = RequestBudget(20)
    sent = []
    for _ in range(50):
        await budget.acquire()
        sent.append(anyio.current_time())
    assert all(later - earlier >= 1.0 for earlier, later in zip(sent, sent[20:], strict=False))
    assert budget.waited_s > 0


async def test_a_zero_budget_means_no_limit() -> None:
    """max_requests_per_s = 0 never waits."""
    budget = RequestBudget(0)
    for _ in range(1000):
        await budget.acquire()
    assert budget.waited_s == 0


async def test_idle_and_announced_polls_wait_in_one_line() -> None:
    """Announced polls never push an idle one back: they share a line, first come first
    served; a submission still goes before both."""
    from worker.api.budget import Lane

    budget = RequestBudget(5)
    for _ in range(5):
        await budget.acquire()
    granted: list[str] = []

    async def ask(name: str, lane: Lane) -> None:
        await budget.acquire(lane)
        granted.append(name)

    arrivals = [("a1", Lane.ANNOUNCED), ("a2", Lane.ANNOUNCED), ("a3", Lane.ANNOUNCED),
                ("i1", Lane.IDLE), ("a4", Lane.ANNOUNCED), ("a5", Lane.ANNOUNCED),
                ("s1", Lane.SUBMIT)]
    async with anyio.create_task_group() as tg:
        for name, lane in arrivals:
            tg.start_soon(ask, name, lane)
            await anyio.wait_all_tasks_blocked()  # each is in line before the next arrives
        with anyio.fail_after(5):
            while len(granted) < 5:  # noqa: ASYNC110 - the next window opens in ~1 s
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert granted[:5] == ["s1", "a1", "a2", "a3", "i1"]


async def test_a_listing_longer_than_asked_is_cut_and_counted() -> None:
    """55,000 runs when 5 were asked for: only 5 are parsed, and the excess is a counted
    bad answer (issue #25: items are capped as bytes are)."""
    runs = [{**run_json("completed", id=f"run_{i}"), "required_action": None}
            for i in range(55_000)]
    body = json.dumps({"object": "list", "data": runs, "has_more": False})

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    app = app_with(handler, "/v1/threads/thread_1/runs")
    async with ServedApp(app) as server, make_client(server.url) as client:
        listed = await client.list_runs("thread_1", limit=5)
        counted = client._metrics.registry.get_sample_value(
            "toolworker_api_errors_total", {"endpoint": "list_runs", "kind": "bad_answer"})
    assert [run.id for run in listed] == [f"run_{i}" for i in range(5)]
    assert counted == 1


async def test_a_request_counts_until_a_window_after_its_answer() -> None:
    """A request that waited for a connection reaches the API late: it holds its place in the
    budget until its answer, and a window after, so the API never sees more than per_s."""
    budget = RequestBudget(1)
    answered = anyio.Event()
    times: dict[str, float] = {}

    async def slow() -> None:
        async with budget.spend():
            await answered.wait()
            times["answered"] = anyio.current_time()

    async def second() -> None:
        await budget.acquire()
        times["second sent"] = anyio.current_time()

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert budget.used() == 1
        await anyio.sleep(0.3)  # the answer comes late
        answered.set()
    assert times["second sent"] - times["answered"] >= RequestBudget.WINDOW_S


async def test_a_share_of_the_budget_applies_to_requests_waiting_already() -> None:
    """Replicas divide the deployment's budget: a smaller share holds back the next ones."""
    budget = RequestBudget(10)
    budget.share(2)
    assert (budget.per_s, budget.total_per_s) == (2, 10)
    for _ in range(2):
        await budget.acquire()
    with anyio.move_on_after(0.2) as scope:
        await budget.acquire()
    assert scope.cancelled_caught
    budget.share(3)
    with anyio.fail_after(1):
        await budget.acquire()

"""Hostile answers to every endpoint the worker reads: only ``ApiError`` ever leaves the client.

Each case is a tiny aiohttp app on loopback answering one garbled body (or header) to every
request; the client must raise ``BadAnswer`` (an ``ApiError``) for it, never ``KeyError``,
``TypeError``, ``RecursionError``... A property test then throws arbitrary JSON at it.
"""

from __future__ import annotations

import json
import math
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServedApp
from worker.api.backends import build_profile
from worker.api.client import ApiClient
from worker.api.clock import ApiClock
from worker.api.retry import RetryPolicy
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import ApiError, ApiStatusError, BadAnswer
from worker.handlers.assistant_sync import sync_assistant
from worker.handlers.registry import Registry
from worker.models import CallOutcome, Round, Run, ToolOutput
from worker.observability.metrics import Metrics

CAP = 64 * 1024  # the smallest [api] max_response_bytes allowed
Call = Callable[[ApiClient], Awaitable[object]]


def run_json(**fields: Any) -> dict[str, Any]:
    """A valid requires_action RunObject of thread_1/run_1, with ``fields`` replacing its own."""
    run = {
        "id": "run_1", "object": "thread.run", "created_at": 1_700_000_000,
        "thread_id": "thread_1", "assistant_id": "asst_1", "status": "requires_action",
        "expires_at": 1_700_000_600,
        "required_action": {"type": "submit_tool_outputs", "submit_tool_outputs": {
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 1}'}}]}},
        "metadata": {},
    }
    run.update(fields)
    return run


def assistant_json(**fields: Any) -> dict[str, Any]:
    return {"id": "asst_1", "object": "assistant", "name": "a", "model": "gpt-4o",
            "tools": [{"type": "function", "function": {"name": "add", "parameters": {}}}],
            **fields}


OUTPUT = ToolOutput("call_1", "2", "add", CallOutcome.OK, 0.0)
CALLS: dict[str, Call] = {
    "retrieve_run": lambda c: c.retrieve_run("thread_1", "run_1"),
    "list_runs": lambda c: c.list_runs("thread_1"),
    "submit_tool_outputs": lambda c: c.submit_tool_outputs("thread_1", "run_1", [OUTPUT]),
    "list_threads": lambda c: c.list_threads(),
    "cancel_run": lambda c: c.cancel_run("thread_1", "run_1"),
    "retrieve_assistant": lambda c: c.retrieve_assistant("asst_1"),
}
RUN_ENDPOINTS = ("retrieve_run", "list_runs", "submit_tool_outputs", "cancel_run")


def valid_answer(endpoint: str, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``endpoint`` answers when all is well, with ``run`` as its run."""
    run = run_json() if run is None else run
    if endpoint == "list_runs":
        return {"object": "list", "data": [run], "has_more": False}
    if endpoint == "list_threads":
        return {"object": "list", "data": [{"id": "thread_1", "object": "thread"}],
                "has_more": False}
    if endpoint == "retrieve_assistant":
        return assistant_json()
    return run


@dataclass(frozen=True)
class Reply:
    """One answer to serve: raw bytes (or a stream of ``chunks`` copies of ``body``)."""

    body: bytes
    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    chunks: int = 0  # > 0: sent chunked, ``body`` repeated this many times, no Content-Length


def app_answering(reply: Reply) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        if not reply.chunks:
            return web.Response(body=reply.body, status=reply.status, headers=dict(reply.headers))
        response = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(reply.chunks):
                await response.write(reply.body)
            await response.write_eof()
        except ConnectionError:
            pass  # the client hung up once it had read enough: what a capped client does
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def make_client(url: str, *, cap: int = CAP) -> ApiClient:
    settings = ApiSettings(base_url=f"{url}/v1", request_timeout_s=10, max_retries=0,
                           max_response_bytes=cap, max_requests_per_s=0)
    return ApiClient(build_profile(settings, Secret("sk-test")), settings, Metrics(),
                     retry=RetryPolicy(0))


async def outcome(reply: Reply, endpoint: str, *, cap: int = CAP) -> object:
    """What the client returns for ``reply``, or the exception it raises."""
    async with ServedApp(app_answering(reply)) as server, make_client(server.url, cap=cap) as c:
        try:
            return await CALLS[endpoint](c)
        except Exception as exc:  # noqa: BLE001 - the point: catch anything, say what it was
            return exc


def body(value: object) -> Reply:
    return Reply(json.dumps(value).encode())


# Garbage any endpoint may answer: the body is not the JSON object it returns.
WHOLE_BODY_GARBLES: dict[str, Reply] = {
    "html": Reply(b"<html><body>502 Bad Gateway</body></html>",
                  headers=(("Content-Type", "text/html"),)),
    "truncated JSON": Reply(json.dumps(run_json()).encode()[:57]),
    "empty body": Reply(b""),
    "JSON array": body([run_json()]),
    "JSON string": body("ok"),
    "JSON null": body(None),
    "bare NaN": Reply(b"NaN"),
    "not UTF-8": Reply(b'{"id": "\xff\xfe"}'),
    "deeply nested": Reply(b"[" * 20_000),  # deeper than Python's recursion limit
    "deeply nested object": Reply(b'{"a":' * 5_000 + b"1" + b"}" * 5_000),
    "huge, with Content-Length": Reply(b" " * (CAP + 1)),
    "huge, chunked": Reply(b" " * 16_384, chunks=64),
}


@pytest.mark.parametrize("endpoint", CALLS)
@pytest.mark.parametrize("garble", WHOLE_BODY_GARBLES)
async def test_a_garbled_body_is_a_bad_answer(endpoint: str, garble: str) -> None:
    """HTML, truncated or nested-to-death JSON, a wrong type or a huge body: BadAnswer."""
    result = await outcome(WHOLE_BODY_GARBLES[garble], endpoint)
    assert isinstance(result, BadAnswer), repr(result)
    assert result.endpoint == endpoint


# A run whose fields are wrong: missing, of the wrong type, or someone else's.
def _tool_calls(calls: object) -> dict[str, Any]:
    return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}


def _call(**function: object) -> list[dict[str, Any]]:
    return [{"id": "call_1", "type": "function", "function": function}]


RUN_GARBLES: dict[str, dict[str, Any]] = {
    "id missing": {"id": None},
    "id an int": {"id": 42},
    "id a path": {"id": "../../assistants"},
    "thread_id a dict": {"thread_id": {"id": "thread_1"}},
    "status a list": {"status": ["requires_action"]},
    "status missing": {"status": None},
    "required_action a string": {"required_action": "submit_tool_outputs"},
    "submit_tool_outputs a list": {"required_action": {"type": "submit_tool_outputs",
                                                       "submit_tool_outputs": [1]}},
    "tool_calls a dict": {"required_action": _tool_calls({"id": "call_1"})},
    "tool_calls a string": {"required_action": _tool_calls("call_1")},
    "a tool call a string": {"required_action": _tool_calls(["call_1"])},
    "a tool call without function": {"required_action": _tool_calls([{"id": "call_1"}])},
    "tool call id an int": {"required_action": _tool_calls(
        [{"id": 1, "type": "function", "function": {"name": "add", "arguments": "{}"}}])},
    "arguments an object": {"required_action": _tool_calls(_call(name="add", arguments={}))},
    "name null": {"required_action": _tool_calls(_call(name=None, arguments="{}"))},
    "expires_at a string": {"expires_at": "1700000600"},
    "expires_at a bool": {"expires_at": True},
    "expires_at NaN": {"expires_at": math.nan},
    "expires_at Infinity": {"expires_at": math.inf},
    "expires_at past any float": {"expires_at": 10**400},
    "created_at a list": {"created_at": [1]},
    "another run": {"id": "run_2"},
    "another thread's run": {"thread_id": "thread_2"},
}


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize("garble", RUN_GARBLES)
async def test_a_garbled_run_is_a_bad_answer(endpoint: str, garble: str) -> None:
    """Every run-returning endpoint refuses a run with a wrong field, naming the problem."""
    if garble == "another run" and endpoint == "list_runs":
        pytest.skip("a listing holds any of the thread's runs")
    result = await outcome(body(valid_answer(endpoint, run_json(**RUN_GARBLES[garble]))), endpoint)
    assert isinstance(result, BadAnswer), repr(result)


LIST_GARBLES: dict[str, object] = {
    "data missing": {"object": "list"},
    "data an object": {"data": {"id": "thread_1"}},
    "data null": {"data": None},
    "data a string": {"data": "thread_1"},
}


@pytest.mark.parametrize("endpoint", ["list_runs", "list_threads"])
@pytest.mark.parametrize("garble", LIST_GARBLES)
async def test_a_listing_without_a_data_list_is_a_bad_answer(endpoint: str, garble: str) -> None:
    """A list answer must hold a ``data`` list."""
    result = await outcome(body(LIST_GARBLES[garble]), endpoint)
    assert isinstance(result, BadAnswer), repr(result)


async def test_thread_listing_items_that_are_not_threads_are_skipped() -> None:
    """Numbers, strings and ids no API issues in a thread listing are skipped, not followed."""
    listing = {"data": [1, "thread_x", None, {"id": 7}, {"id": "../x"}, {"id": "thread_1"}],
               "has_more": True}
    result = await outcome(body(listing), "list_threads")
    assert result == (["thread_1"], "thread_1")


ASSISTANT_GARBLES: dict[str, dict[str, Any]] = {
    "id an int": {"id": 5},
    "id missing": {"id": None},
    "tools an int": {"tools": 7},
    "tools a dict": {"tools": {"type": "function"}},
    "a tool a string": {"tools": ["function"]},
    "function a string": {"tools": [{"type": "function", "function": "add"}]},
    "function name a list": {"tools": [{"type": "function", "function": {"name": ["add"]}}]},
}


@pytest.mark.parametrize("garble", ASSISTANT_GARBLES)
async def test_a_garbled_assistant_is_a_bad_answer(garble: str) -> None:
    """retrieve_assistant refuses an assistant that tool sync could not read."""
    result = await outcome(body(assistant_json(**ASSISTANT_GARBLES[garble])), "retrieve_assistant")
    assert isinstance(result, BadAnswer), repr(result)


async def test_tool_sync_against_a_garbled_assistant_raises_only_api_errors() -> None:
    """``tools sync`` reads the assistant through the client, so it fails with an ApiError."""
    registry = Registry.from_modules(["tests.handlers.sample"])
    for garble in ASSISTANT_GARBLES.values():
        reply = body(assistant_json(**garble))
        async with ServedApp(app_answering(reply)) as server, make_client(server.url) as client:
            with pytest.raises(ApiError):
                await sync_assistant(client, "asst_1", registry, dry_run=True)


@pytest.mark.parametrize("expires_at", [0, 0.0, -1, -1_700_000_600.5])
def test_an_expiry_of_zero_or_below_means_none(expires_at: float) -> None:
    """Servers that write 0 for "no expiry": the run has no expiry (like null), not a past one."""
    run = Run.from_json(run_json(expires_at=expires_at))
    assert run.expires_at is None
    assert Round.from_run(run, 0.0).expiry is None
    assert Run.from_json(run_json(expires_at=1)).expires_at == 1.0  # a real past time stays


@pytest.mark.parametrize("endpoint", CALLS)
async def test_extra_fields_are_ignored(endpoint: str) -> None:
    """Fields the worker does not know, at every level, change nothing."""
    run = run_json(surprise={"nested": [1, None]}, usage=None, tools=[{"type": "x"}])
    answer = valid_answer(endpoint, run) | {"extra": True, "first_id": 9}
    result = await outcome(body(answer), endpoint)
    assert not isinstance(result, Exception), repr(result)


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize("hint", ["²", "-5", "1e3", "9" * 40, "0x10", ""])
async def test_a_garbled_poll_hint_is_ignored(endpoint: str, hint: str) -> None:
    """A poll-after header that is not a plain number of ms is ignored, not a crash."""
    reply = Reply(json.dumps(valid_answer(endpoint)).encode(),
                  headers=(("Content-Type", "application/json"), ("openai-poll-after-ms", hint)))
    result = await outcome(reply, endpoint)
    assert not isinstance(result, Exception), repr(result)
    runs = result if isinstance(result, list) else [result]
    assert all(isinstance(run, Run) and run.poll_after_ms is None for run in runs)


@pytest.mark.parametrize("status", [500, 503, 422])
@pytest.mark.parametrize("garble", ["html", "deeply nested", "huge, chunked", "JSON array"])
async def test_a_garbled_error_answer_is_an_api_error(status: int, garble: str) -> None:
    """Error answers are read as carefully: a status error (or BadAnswer), nothing else."""
    reply = WHOLE_BODY_GARBLES[garble]
    reply = Reply(reply.body, status, reply.headers, reply.chunks)
    result = await outcome(reply, "retrieve_run")
    assert isinstance(result, ApiStatusError | BadAnswer), repr(result)


async def test_a_large_answer_arriving_in_pieces_is_read_whole() -> None:
    """A valid answer under the cap but sent in many chunks parses: the cap is not one read."""
    arguments = json.dumps({"text": "x" * 200_000})
    run = run_json(required_action=_tool_calls(_call(name="add", arguments=arguments)))
    text = json.dumps(run).encode()
    pieces = [text[i:i + 4096] for i in range(0, len(text), 4096)]

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            await anyio.sleep(0.001)  # each piece arrives on its own
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with ServedApp(app) as server, make_client(server.url, cap=1024 * 1024) as client:
        fetched = await client.retrieve_run("thread_1", "run_1")
    assert fetched.tool_calls[0].arguments == arguments


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip bomb"])
async def test_a_100_mb_answer_is_refused_unread(compressed: bool) -> None:
    """~100 MB of arguments (plain, or a gzip bomb) is refused with the heap far below that."""
    cap = 1024 * 1024
    head = b'{"id": "run_1", "thread_id": "thread_1", "status": "requires_action", "x": "'
    filler = b"x" * (1024 * 1024)
    if compressed:
        packer = zlib.compressobj(wbits=31)  # gzip framing
        gz = packer.compress(head) + b"".join(packer.compress(filler) for _ in range(100))
        reply = Reply(gz + packer.flush(), headers=(("Content-Type", "application/json"),
                                                    ("Content-Encoding", "gzip")))
    else:
        reply = Reply(filler, chunks=100)
    tracemalloc.start()
    try:
        result = await outcome(reply, "retrieve_run", cap=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, BadAnswer), repr(result)
    assert "max_response_bytes" in str(result)
    # Generous: the cap, a copy of it, aiohttp's buffers; 100 MB read whole would be ~200 MB.
    assert peak < 24 * cap, f"peak {peak / 1e6:.1f} MB for a cap of {cap / 1e6:.1f} MB"


# Property: any JSON value served as a run, or a valid run with any part replaced by any JSON.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=20,
)


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: object) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


@st.composite
def run_answers(draw: st.DrawFn) -> object:
    if draw(st.booleans()):
        return draw(JSON)
    valid = run_json()
    path = draw(st.sampled_from(_paths(valid)))
    return _replaced(valid, path, draw(JSON))


def _check(run: Run) -> None:
    assert isinstance(run.id, str)
    assert isinstance(run.thread_id, str)
    assert run.expires_at is None or math.isfinite(run.expires_at)
    assert math.isfinite(run.created_at)
    for call in run.tool_calls:
        assert all(isinstance(v, str) for v in (call.id, call.name, call.arguments))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=run_answers(), endpoint=st.sampled_from(RUN_ENDPOINTS))
async def test_any_json_as_a_run_is_a_run_or_a_bad_answer(answer: object, endpoint: str) -> None:
    """Arbitrary JSON, alone or in place of any part of a valid run: a Run, or BadAnswer."""
    served = {"data": [answer]} if endpoint == "list_runs" else answer
    result = await outcome(Reply(json.dumps(served).encode()), endpoint)
    if isinstance(result, Exception):
        assert isinstance(result, BadAnswer), repr(result)
    else:
        for run in result if isinstance(result, list) else [result]:
            assert isinstance(run, Run)
            _check(run)


@given(date=st.text(max_size=40) | st.from_regex(
    r"[A-Z][a-z]{2}, \d{1,3} [A-Z][a-z]{2} \d{1,6} \d\d:\d\d:\d\d [A-Z+-]{1,5}\d{0,4}",
    fullmatch=True))
def test_any_date_header_leaves_the_clock_finite(date: str) -> None:
    """A garbled ``Date`` never raises, and the offset stays a finite number."""
    clock = ApiClock()
    clock.observe(date, 1_700_000_000.0)
    assert math.isfinite(clock.offset_s)


@pytest.mark.parametrize(
    ("endpoint", "answer"),
    [
        ("retrieve_run", run_json(id=42)),
        ("retrieve_run", run_json(thread_id="thread_2")),
        ("list_runs", {"data": [run_json(status=["x"])]}),
        ("list_runs", {"data": None}),
        ("submit_tool_outputs", run_json(expires_at="soon")),
        ("cancel_run", run_json(required_action="x")),
        ("list_threads", {"data": "thread_1"}),
        ("retrieve_assistant", assistant_json(tools=7)),
        ("retrieve_run", [run_json()]),
    ],
)
async def test_every_bad_answer_is_counted(endpoint: str, answer: object) -> None:
    """A body of the wrong shape counts in toolworker_api_errors_total like unreadable JSON."""
    async with ServedApp(app_answering(body(answer))) as server, make_client(server.url) as c:
        with pytest.raises(BadAnswer):
            await CALLS[endpoint](c)
        counted = c._metrics.registry.get_sample_value(
            "toolworker_api_errors_total", {"endpoint": endpoint, "kind": "bad_answer"})
    assert counted == 1

"""The simulator over HTTP: auth, the beta header, every endpoint, errors; each answer checked by the spec."""

from __future__ import annotations

import json
import socket
import time

import aiohttp
import anyio
import pytest

from tests.conftest import wait_for
from worker.simulator import Simulator, ToolCallScript, serve_forever

from .helpers import SimHttp

ECHO_TOOL = {
    "type": "function",
    "function": {
        "name": "echo",
        "description": "Say it back.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}


def _rounds(*rounds: list[tuple[str, str]]) -> str:
    return json.dumps([[{"name": n, "arguments": a} for n, a in round_] for round_ in rounds])


async def _setup(api: SimHttp) -> tuple[str, str]:
    assistant = await api.post("/assistants", {"model": "gpt-4o", "name": "demo",
                                               "tools": [ECHO_TOOL]})
    thread = await api.post("/threads", {"messages": [{"role": "user", "content": "hi"}]})
    return assistant.body["id"], thread.body["id"]


def _outputs(run: dict[str, object], text: str = "ok") -> dict[str, object]:
    action = run["required_action"]
    assert isinstance(action, dict)
    calls = action["submit_tool_outputs"]["tool_calls"]
    return {"tool_outputs": [{"tool_call_id": c["id"], "output": text} for c in calls]}


async def test_missing_key_is_401(sim: Simulator) -> None:
    async with SimHttp(sim.base_url, "") as api:
        reply = await api.get("/assistants")
    assert reply.status == 401
    assert reply.body["error"]["code"] == "invalid_api_key"
    assert reply.body["error"]["type"] == "invalid_request_error"
    assert reply.headers["x-request-id"].startswith("req_")


async def test_wrong_key_is_401_without_echoing_the_key(sim: Simulator) -> None:
    wrong = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
    async with SimHttp(sim.base_url, wrong) as api:
        reply = await api.get("/threads/thread_x/runs")
    error = reply.body["error"]
    assert (reply.status, error["code"], error["param"]) == (401, "invalid_api_key", None)
    assert error["message"].startswith("Incorrect API key provided: sk-")
    assert wrong not in error["message"]
    assert "0123" in error["message"]  # like the API: the ends, never the whole key


async def test_missing_beta_header_is_400(sim: Simulator) -> None:
    async with SimHttp(sim.base_url, sim.api_key, beta=None) as api:
        reply = await api.get("/assistants")
    assert reply.status == 400
    assert reply.body["error"]["message"] == (
        "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try again"
        " by setting the header 'OpenAI-Beta: assistants=v2'."
    )
    async with SimHttp(sim.base_url, sim.api_key, beta="assistants=v1") as api:
        reply = await api.get("/assistants")
    assert reply.status == 400
    assert "v1 Assistants API has been deprecated" in reply.body["error"]["message"]
    async with SimHttp(sim.base_url, sim.api_key, beta="other=v1, assistants=v2") as api:
        assert (await api.get("/assistants")).status == 200


async def test_beta_header_can_be_optional() -> None:
    async with Simulator(require_beta_header=False) as sim, SimHttp(
        sim.base_url, sim.api_key, beta=None
    ) as api:
        assert (await api.get("/assistants")).status == 200


async def test_scripted_run_over_http(sim: Simulator, api: SimHttp) -> None:
    assistant_id, thread_id = await _setup(api)
    message = await api.post(f"/threads/{thread_id}/messages", {"role": "user", "content": "go"})
    assert message.body["content"][0]["text"] == {"value": "go", "annotations": []}
    long_args = json.dumps({"text": "x" * 600})  # longer than the API's 512-char metadata limit
    script = _rounds([("echo", '{"text": "hi"}'), ("echo", long_args)], [("echo", "{not json")])
    created = await api.post(
        f"/threads/{thread_id}/runs",
        {"assistant_id": assistant_id, "metadata": {"sim_rounds": script, "team": "a"}},
    )
    assert (created.status, created.body["status"]) == (200, "queued")
    assert created.body["tools"] == [ECHO_TOOL]
    run_path = f"/threads/{thread_id}/runs/{created.body['id']}"

    run = (await api.get(run_path)).body
    assert run["status"] == "requires_action"
    calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"text": "hi"}', long_args]
    submitted = await api.post(f"{run_path}/submit_tool_outputs", _outputs(run))
    assert (submitted.status, submitted.body["status"]) == (200, "queued")

    run = (await api.get(run_path)).body
    assert run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["function"] == {
        "name": "echo", "arguments": "{not json",
    }
    await api.post(f"{run_path}/submit_tool_outputs", _outputs(run))
    run = (await api.get(run_path)).body
    assert run["status"] == "completed"

    messages = await api.get(f"/threads/{thread_id}/messages", run_id=created.body["id"])
    assert [m["role"] for m in messages.body["data"]] == ["assistant"]
    assert [s.round_index for s in sim.accepted_submissions(created.body["id"])] == [0, 1]
    assert sim.request_counts["submit_tool_outputs"] == 2


async def test_submit_errors_over_http_are_recorded(sim: Simulator, api: SimHttp) -> None:
    assistant_id, thread_id = await _setup(api)
    run_id = sim.create_run(thread_id, assistant_id, [[ToolCallScript("echo", "{}")]])
    path = f"/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"

    invalid_json = await api.request("POST", path, raw=b'{"tool_outputs": [')
    assert invalid_json.status == 400
    assert "could not parse the JSON body" in invalid_json.body["error"]["message"]
    extra = await api.post(path, {"tool_outputs": [], "thread_id": thread_id})
    assert (extra.status, extra.body["error"]["code"]) == (400, "unknown_parameter")
    assert [(s.status, s.run_id) for s in sim.submissions] == [(400, run_id), (400, run_id)]
    assert sim.run(run_id)["status"] == "requires_action"


async def test_one_active_run_per_thread_over_http(sim: Simulator, api: SimHttp) -> None:
    assistant_id, thread_id = await _setup(api)
    run_id = sim.create_run(thread_id, assistant_id, [[ToolCallScript("echo", "{}")]])
    again = await api.post(f"/threads/{thread_id}/runs", {"assistant_id": assistant_id})
    assert again.status == 400
    assert again.body["error"]["message"] == (
        f"Thread {thread_id} already has an active run {run_id}."
    )
    with pytest.raises(ValueError, match="already has an active run"):
        sim.create_run(thread_id, assistant_id)


async def test_cancel_over_http(sim: Simulator, api: SimHttp) -> None:
    assistant_id, thread_id = await _setup(api)
    run_id = sim.create_run(thread_id, assistant_id, [[ToolCallScript("echo", "{}")]])
    cancel = await api.post(f"/threads/{thread_id}/runs/{run_id}/cancel")
    assert cancel.body["status"] == "cancelling"
    assert (await api.get(f"/threads/{thread_id}/runs/{run_id}")).body["status"] == "cancelled"
    again = await api.post(f"/threads/{thread_id}/runs/{run_id}/cancel")
    assert again.status == 400
    assert sim.all_runs_terminal()


async def test_list_runs_pagination_over_http(sim: Simulator, api: SimHttp) -> None:
    assistant_id, thread_id = await _setup(api)
    run_ids = [sim.create_run(thread_id, assistant_id) for _ in range(5)]  # each completes
    newest = run_ids[::-1]
    path = f"/threads/{thread_id}/runs"

    seen: list[str] = []
    after: dict[str, str] = {}
    while True:
        page = (await api.get(path, limit="2", **after)).body
        seen += [run["id"] for run in page["data"]]
        if not page["has_more"]:
            break
        after = {"after": page["last_id"]}
    assert seen == newest
    back = (await api.get(path, limit="2", before=newest[3])).body
    assert ([r["id"] for r in back["data"]], back["has_more"]) == (newest[1:3], True)
    ascending = (await api.get(path, order="asc", limit="100")).body
    assert [r["id"] for r in ascending["data"]] == run_ids

    for bad in ("0", "101", "ten"):
        reply = await api.get(path, limit=bad)
        assert (reply.status, reply.body["error"]["param"]) == (400, "limit")


async def test_empty_lists_and_unknown_ids(sim: Simulator, api: SimHttp) -> None:
    _, thread_id = await _setup(api)
    empty = (await api.get(f"/threads/{thread_id}/runs")).body
    assert (empty["data"], empty["first_id"], empty["has_more"]) == ([], None, False)
    missing = await api.get("/threads/thread_nope/runs/run_nope")
    assert (missing.status, missing.body["error"]["message"]) == (
        404, "No thread found with id 'thread_nope'.",
    )
    missing_run = await api.get(f"/threads/{thread_id}/runs/run_nope")
    assert missing_run.body["error"]["message"] == "No run found with id 'run_nope'."
    bad_url = await api.get("/threads")
    assert (bad_url.status, bad_url.body["error"]["message"]) == (404, "Invalid URL (GET /v1/threads)")


async def test_assistants_endpoints(api: SimHttp) -> None:
    created = await api.post("/assistants", {"model": "gpt-4o", "name": "one", "metadata": {"k": "v"}})
    assistant_id = created.body["id"]
    assert assistant_id.startswith("asst_")
    renamed = await api.post(f"/assistants/{assistant_id}", {"name": "two", "tools": [ECHO_TOOL]})
    assert (renamed.body["name"], renamed.body["tools"]) == ("two", [ECHO_TOOL])
    assert (await api.get(f"/assistants/{assistant_id}")).body["name"] == "two"
    listing = await api.get("/assistants", limit="1")
    assert [a["id"] for a in listing.body["data"]] == [assistant_id]
    no_model = await api.post("/assistants", {"name": "x"})
    assert (no_model.status, no_model.body["error"]["code"]) == (400, "missing_required_parameter")
    assert (await api.get("/assistants/asst_nope")).status == 404


async def test_create_thread_and_run(sim: Simulator, api: SimHttp) -> None:
    assistant_id, _ = await _setup(api)
    body = {
        "assistant_id": assistant_id,
        "thread": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        "metadata": {"sim_rounds": _rounds([("echo", "{}")])},
    }
    run = (await api.post("/threads/runs", body)).body
    thread = (await api.get(f"/threads/{run['thread_id']}")).body
    assert thread["object"] == "thread"
    assert sim.run(run["id"])["status"] == "requires_action"
    bad = await api.post("/threads/runs", {**body, "metadata": {"sim_rounds": "[["}})
    assert bad.status == 400
    assert sim.request_counts["create_thread_and_run"] == 2


async def test_messages_cannot_be_added_while_a_run_is_active(sim: Simulator, api: SimHttp) -> None:
    assistant_id, thread_id = await _setup(api)
    sim.create_run(thread_id, assistant_id, [[ToolCallScript("echo", "{}")]])
    reply = await api.post(f"/threads/{thread_id}/messages", {"role": "user", "content": "more"})
    assert reply.status == 400


async def test_polling_hint_header_while_thinking() -> None:
    async with Simulator(thinking_s=30.0) as sim, SimHttp(sim.base_url) as api:
        assistant_id, thread_id = await _setup(api)
        created = await api.post(f"/threads/{thread_id}/runs", {"assistant_id": assistant_id})
        assert created.body["status"] == "queued"
        assert 1 <= int(created.headers["openai-poll-after-ms"]) <= 1000


async def test_latency_delays_every_answer() -> None:
    async with Simulator(latency_s=0.2) as sim, SimHttp(sim.base_url) as api:
        started = time.monotonic()
        await api.get("/assistants")
        assert time.monotonic() - started >= 0.2


async def test_serve_in_a_task_group() -> None:
    sim = Simulator()
    async with anyio.create_task_group() as tg:
        port = await tg.start(sim.serve)
        assert port == sim.port
        async with SimHttp(sim.base_url) as api:
            assert (await api.get("/assistants")).status == 200
        tg.cancel_scope.cancel()
    with pytest.raises(RuntimeError, match="not started"):
        _ = sim.port


async def test_serve_forever_serves_until_cancelled() -> None:
    with socket.socket() as probe:  # a free port for the fixed-port entry point
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def answers() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/v1/assistants", headers={"Authorization": "Bearer k"}
            ) as response:
                return response.status == 400  # key accepted, beta header missing
        except aiohttp.ClientConnectionError:
            return False

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve_forever("127.0.0.1", port, api_key="k"))
        await wait_for(answers, timeout_s=5, what="the answers")
        tg.cancel_scope.cancel()


async def test_rounds_visible_records_when_each_round_appeared() -> None:
    async with Simulator(thinking_s=0.05) as sim:
        assistant_id = sim.create_assistant("demo", [ECHO_TOOL])
        thread_id = sim.create_thread(["hi"])
        before = time.monotonic()
        run_id = sim.create_run(thread_id, assistant_id, [[ToolCallScript("echo", "{}")]])
        await wait_for(lambda: (run_id, 0) in sim.rounds_visible, timeout_s=5,
                       what="the first round to be visible")
        visible = sim.rounds_visible[(run_id, 0)]
        # The moment the round appeared (creation + thinking), not the moment someone looked;
        # the margin covers time.time() and time.monotonic() drifting apart meanwhile.
        assert before + 0.05 - 0.01 <= visible <= time.monotonic()


async def test_python_api_reads_sim_rounds_from_metadata(sim: Simulator) -> None:
    script = _rounds([("echo", "{}")])
    run_id = sim.create_run(sim.create_thread(), sim.create_assistant(), metadata={"sim_rounds": script})
    assert sim.run(run_id)["status"] == "requires_action"
    assert not sim.all_runs_terminal()


async def test_large_tool_outputs_are_accepted(sim: Simulator, api: SimHttp) -> None:
    thread_id = sim.create_thread()
    run_id = sim.create_run(thread_id, sim.create_assistant(), [[ToolCallScript("echo", "{}")]])
    body = _outputs(sim.run(run_id), "x" * 2_000_000)  # beyond aiohttp's default 1 MiB cap
    reply = await api.post(f"/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", body)
    assert reply.status == 200
    assert len(sim.accepted_submissions()[0].tool_outputs[0][1]) == 2_000_000

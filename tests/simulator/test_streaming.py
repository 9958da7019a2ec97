"""Runs stream as server-sent events: the SDK drives several rounds, and each event is per the spec."""

from __future__ import annotations

import importlib
import importlib.util
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import openai
import pytest

from worker.simulator import FaultPlan, FaultRule, Simulator

from .helpers import SPEC

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from openai.types.beta import AssistantStreamEvent
    from openai.types.beta.threads import Run
    from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:The Assistants API is deprecated in favor of the Responses API:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:deprecated$:DeprecationWarning"),
]

SCRIPT = json.dumps([
    [{"name": "echo", "arguments": '{"text": "a"}'}, {"name": "echo", "arguments": '{"text": "b"}'}],
    [{"name": "echo", "arguments": '{"text": "c"}'}],
])
# The SDK wraps a refused connection in APIConnectionError, but lets the error of a body cut
# mid-read out of its HTTP library (httpx, or httpx2 in newer SDKs) unwrapped.
_HTTP = importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")
BROKEN_STREAM = (openai.APIConnectionError, _HTTP.TransportError)
ROUND_ENDS = ["thread.run.queued", "thread.run.in_progress", "thread.run.requires_action"]
# Which component schema each event's data is, by the event name's prefix.
EVENT_SCHEMAS = {"thread.run.": "RunObject", "thread.message.": "MessageObject",
                 "thread.created": "ThreadObject"}


@pytest.fixture
async def thinking_sim() -> AsyncIterator[Simulator]:
    async with Simulator(thinking_s=0.02) as simulator:
        yield simulator


def _sdk(sim: Simulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0)


def _outputs(run: Run) -> list[ToolOutput]:
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    return [{"tool_call_id": call.id, "output": call.function.arguments} for call in calls]


def _names(events: list[AssistantStreamEvent]) -> list[str]:
    return [event.event for event in events]


def _start(sim: Simulator) -> tuple[str, str]:
    return sim.create_assistant("demo"), sim.create_thread(["go"])


async def test_sdk_streams_a_run_through_every_round(thinking_sim: Simulator) -> None:
    """create(stream=True), then submit_tool_outputs_stream each round, until the run completes."""
    sim = thinking_sim
    assistant_id, thread_id = _start(sim)
    async with _sdk(sim) as client:
        stream = await client.beta.threads.runs.create(
            thread_id, assistant_id=assistant_id, metadata={"sim_rounds": SCRIPT}, stream=True
        )
        events = [event async for event in stream]
        assert _names(events) == ["thread.run.created", *ROUND_ENDS]
        run = events[-1].data
        assert isinstance(run, openai.types.beta.threads.Run)
        assert len(_outputs(run)) == 2

        async with client.beta.threads.runs.submit_tool_outputs_stream(
            run_id=run.id, thread_id=thread_id, tool_outputs=_outputs(run)
        ) as second:
            events = [event async for event in second]
            run = await second.get_final_run()
        assert _names(events) == ROUND_ENDS
        assert run.status == "requires_action"

        async with client.beta.threads.runs.submit_tool_outputs_stream(
            run_id=run.id, thread_id=thread_id, tool_outputs=_outputs(run)
        ) as last:
            events = [event async for event in last]
            run = await last.get_final_run()
            messages = await last.get_final_messages()
    assert _names(events) == [
        "thread.run.queued", "thread.run.in_progress", "thread.message.created",
        "thread.message.completed", "thread.run.completed",
    ]
    assert run.status == "completed"
    assert [m.role for m in messages] == ["assistant"]
    assert [s.status for s in sim.submissions] == [200, 200]
    assert sim.run(run.id)["status"] == "completed"


async def test_sdk_streams_create_and_run(sim: Simulator) -> None:
    """POST /threads/runs with stream: the thread is announced first, then the run."""
    assistant_id = sim.create_assistant("demo")
    async with _sdk(sim) as client:
        stream = await client.beta.threads.create_and_run(
            assistant_id=assistant_id, metadata={"sim_rounds": SCRIPT}, stream=True
        )
        events = [event async for event in stream]
    assert _names(events) == [
        "thread.created", "thread.run.created", "thread.run.queued", "thread.run.requires_action",
    ]


async def _raw_stream(sim: Simulator, path: str, body: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    headers = {"Authorization": f"Bearer {sim.api_key}", "OpenAI-Beta": "assistants=v2"}
    async with aiohttp.ClientSession() as session, session.post(
        sim.base_url + path, json=body, headers=headers
    ) as response:
        assert response.status == 200
        text = await response.text()
        content_type = response.headers["Content-Type"]
    events = []
    for block in text.split("\n\n"):
        if block:
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields["event"], fields["data"]))
    return content_type, events


async def test_every_event_matches_the_spec(thinking_sim: Simulator) -> None:
    """Each event's data is the spec's object for its name, and the stream ends with [DONE]."""
    sim = thinking_sim
    assistant_id, thread_id = _start(sim)
    body = {"assistant_id": assistant_id, "metadata": {"sim_rounds": SCRIPT}, "stream": True}
    content_type, events = await _raw_stream(sim, f"/threads/{thread_id}/runs", body)
    for _ in range(2):
        run = json.loads(events[-2][1])
        calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        outputs = [{"tool_call_id": c["id"], "output": "ok"} for c in calls]
        path = f"/threads/{thread_id}/runs/{run['id']}/submit_tool_outputs"
        _, more = await _raw_stream(sim, path, {"tool_outputs": outputs, "stream": True})
        events += more
    assert content_type.startswith("text/event-stream")
    assert events.count(("done", "[DONE]")) == 3
    assert events[-1] == ("done", "[DONE]")
    checked = 0
    for name, data in events:
        schema = next((s for prefix, s in EVENT_SCHEMAS.items() if name.startswith(prefix)), None)
        if schema is not None:
            SPEC.validate(schema, json.loads(data))
            checked += 1
    assert checked == len(events) - 3


async def test_a_refused_streaming_submit_is_a_json_400(sim: Simulator) -> None:
    """Wrong ids are refused before any event, with the API's error body."""
    assistant_id, thread_id = _start(sim)
    run_id = sim.create_run(thread_id, assistant_id, metadata={"sim_rounds": SCRIPT})
    async with _sdk(sim) as client:
        with pytest.raises(openai.BadRequestError, match="Expected tool outputs"):
            async with client.beta.threads.runs.submit_tool_outputs_stream(
                run_id=run_id, thread_id=thread_id,
                tool_outputs=[{"tool_call_id": "call_nope", "output": "x"}],
            ) as stream:
                await stream.until_done()
    assert sim.run(run_id)["status"] == "requires_action"


def _cut_plan(kind: str) -> FaultPlan:
    return FaultPlan(rules={"submit_tool_outputs": FaultRule(**{f"p_{kind}": 1.0})})


async def _cut_submit(sim: Simulator) -> tuple[str, list[str], BaseException | None]:
    """Stream a submission of the first round; the event names that came, and what was raised."""
    assistant_id, thread_id = _start(sim)
    run_id = sim.create_run(thread_id, assistant_id, metadata={"sim_rounds": SCRIPT})
    calls = sim.run(run_id)["required_action"]["submit_tool_outputs"]["tool_calls"]
    outputs: list[ToolOutput] = [{"tool_call_id": c["id"], "output": "ok"} for c in calls]
    names: list[str] = []
    raised: BaseException | None = None
    async with _sdk(sim) as client:
        try:
            async with client.beta.threads.runs.submit_tool_outputs_stream(
                run_id=run_id, thread_id=thread_id, tool_outputs=outputs
            ) as stream:
                async for event in stream:
                    names.append(event.event)  # noqa: PERF401 - keep the events before the cut
        except BROKEN_STREAM as exc:
            raised = exc
    return run_id, names, raised


async def test_a_stream_cut_before_apply_applies_nothing() -> None:
    """The connection closes before the outputs are taken: the round still waits for them."""
    async with Simulator(faults=_cut_plan("cut_before_apply")) as sim:
        run_id, names, raised = await _cut_submit(sim)
        assert raised is not None
        assert names == []
        assert sim.run(run_id)["status"] == "requires_action"
        assert sim.submissions == []
        assert sim.faults_injected == {"submit_tool_outputs:cut_before_apply": 1}


async def test_a_stream_cut_after_apply_took_the_outputs() -> None:
    """The outputs were applied and the 200 sent, then the connection closed before any event."""
    async with Simulator(faults=_cut_plan("cut_after_apply")) as sim:
        run_id, names, raised = await _cut_submit(sim)
        assert raised is not None
        assert names == []
        assert [s.status for s in sim.accepted_submissions(run_id)] == [200]
        assert sim.run(run_id)["status"] == "requires_action"  # the second round
        assert sim.state.run_record(run_id).round_index == 1
        assert sim.faults_injected == {"submit_tool_outputs:cut_after_apply": 1}


async def test_a_stream_cut_mid_stream_sends_the_first_event_only() -> None:
    """The first event arrives, then the stream stops without the next round or [DONE]."""
    async with Simulator(faults=_cut_plan("cut_mid_stream")) as sim:
        run_id, names, raised = await _cut_submit(sim)
        assert raised is not None
        assert names == ["thread.run.queued"]
        assert len(sim.accepted_submissions(run_id)) == 1
        assert sim.faults_injected == {"submit_tool_outputs:cut_mid_stream": 1}


async def test_stream_cuts_spare_requests_that_do_not_stream() -> None:
    """A plain submission under a stream-cut rule is answered as usual, and nothing is counted."""
    async with Simulator(faults=_cut_plan("cut_before_apply")) as sim, _sdk(sim) as client:
        assistant_id, thread_id = _start(sim)
        run_id = sim.create_run(thread_id, assistant_id, metadata={"sim_rounds": SCRIPT})
        run = await client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        await client.beta.threads.runs.submit_tool_outputs(
            run_id, thread_id=thread_id, tool_outputs=_outputs(run)
        )
        assert sim.faults_injected == {}

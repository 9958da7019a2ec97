"""The official `openai` SDK drives the simulator and parses every answer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import openai
import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from openai.types.beta import FunctionToolParam
    from openai.types.beta.threads import Run
    from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput

    from worker.simulator import Simulator

# The SDK marks every Assistants method deprecated: threads and runs with this message...
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:The Assistants API is deprecated in favor of the Responses API:DeprecationWarning"
    ),
    # ...and client.beta.assistants.* with the bare word.
    pytest.mark.filterwarnings("ignore:deprecated$:DeprecationWarning"),
]

ECHO_TOOL: FunctionToolParam = {
    "type": "function",
    "function": {
        "name": "echo",
        "description": "Say it back.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0)
    async with sdk:
        yield sdk


def _outputs(run: Run, text: str) -> list[ToolOutput]:
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    return [{"tool_call_id": call.id, "output": text} for call in calls]


async def test_sdk_runs_a_scripted_conversation(
    sim: Simulator, client: openai.AsyncOpenAI
) -> None:
    assistant = await client.beta.assistants.create(model="gpt-4o", name="demo", tools=[ECHO_TOOL])
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(thread.id, role="user", content="say hi")
    script = [[{"name": "echo", "arguments": '{"text": "hi"}'}, {"name": "echo", "arguments": "{}"}],
              [{"name": "echo", "arguments": '{"text": "again"}'}]]
    run = await client.beta.threads.runs.create(
        thread.id, assistant_id=assistant.id, metadata={"sim_rounds": json.dumps(script)}
    )
    assert run.status == "queued"

    run = await client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert run.status == "requires_action"
    assert run.required_action is not None
    first = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.function.name, c.function.arguments) for c in first] == [
        ("echo", '{"text": "hi"}'), ("echo", "{}"),
    ]
    run = await client.beta.threads.runs.submit_tool_outputs(
        run.id, thread_id=thread.id, tool_outputs=_outputs(run, "hi")
    )
    assert run.status == "queued"

    run = await client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert run.required_action is not None
    second = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.arguments for c in second] == ['{"text": "again"}']
    assert not {c.id for c in second} & {c.id for c in first}
    with pytest.raises(openai.BadRequestError, match="Expected tool outputs for call_ids"):
        await client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": first[0].id, "output": "x"}]
        )
    run = await client.beta.threads.runs.submit_tool_outputs(
        run.id, thread_id=thread.id, tool_outputs=_outputs(run, "again")
    )
    run = await client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert run.status == "completed"
    assert run.usage is not None

    messages = await client.beta.threads.messages.list(thread.id)
    assert [m.role for m in messages.data] == ["assistant", "user"]
    assert [s.status for s in sim.submissions] == [200, 400, 200]


async def test_sdk_paginates_runs(sim: Simulator, client: openai.AsyncOpenAI) -> None:
    assistant_id = sim.create_assistant("demo")
    thread_id = sim.create_thread()
    run_ids = [sim.create_run(thread_id, assistant_id) for _ in range(5)]  # each completes

    runs = [run async for run in client.beta.threads.runs.list(thread_id, limit=2)]
    assert [run.id for run in runs] == run_ids[::-1]
    assert all(run.status == "completed" for run in runs)
    assert sim.request_counts["list_runs"] == 3

    page = await client.beta.threads.runs.list(thread_id, limit=2, order="asc")
    assert [run.id for run in page.data] == run_ids[:2]
    assert page.has_next_page()
    following = await page.get_next_page()
    assert [run.id for run in following.data] == run_ids[2:4]


async def test_sdk_maps_error_bodies(sim: Simulator, client: openai.AsyncOpenAI) -> None:
    thread_id = sim.create_thread()
    with pytest.raises(openai.NotFoundError) as not_found:
        await client.beta.threads.runs.retrieve("run_nope", thread_id=thread_id)
    assert not_found.value.body == {
        "message": "No run found with id 'run_nope'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert not_found.value.request_id is not None
    async with openai.AsyncOpenAI(api_key="sk-wrong-key-123456", base_url=sim.base_url,
                                  max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as refused:
            await wrong.beta.threads.retrieve(thread_id)
    assert refused.value.code == "invalid_api_key"

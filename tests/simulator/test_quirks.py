"""Quirks of other compatible servers and the poll-hint modes: each opt-in, each as described."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import openai
import pytest

from worker.simulator import POLL_HINTS, QUIRKS, Simulator, ToolCallScript
from worker.simulator.wire import RequestRefused

from .helpers import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterable

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:The Assistants API is deprecated in favor of the Responses API:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:deprecated$:DeprecationWarning"),
]

ECHO = ToolCallScript("echo", '{"text": "hi"}')


class QuirkyWorld:
    """A simulator (not started) on a fake clock, with one assistant and one thread."""

    def __init__(self, quirks: Iterable[str], **kwargs: Any) -> None:
        self.clock = FakeClock()
        self.sim = Simulator(quirks=quirks, clock=self.clock, **kwargs)
        self.state = self.sim.state
        self.assistant_id = self.sim.create_assistant("demo")
        self.thread_id = self.sim.create_thread()

    def start(self, *rounds: list[ToolCallScript]) -> str:
        return self.sim.create_run(self.thread_id, self.assistant_id, list(rounds))

    def submit_all(self, run_id: str) -> dict[str, Any]:
        calls = self.sim.run(run_id)["required_action"]["submit_tool_outputs"]["tool_calls"]
        body = {"tool_outputs": [{"tool_call_id": c["id"], "output": "ok"} for c in calls]}
        return self.state.submit_tool_outputs(self.thread_id, run_id, body)


def test_quirks_are_named_once_and_unknown_names_are_refused() -> None:
    assert QUIRKS == (
        "list_order_by_second", "late_submit_404", "null_expiry", "float_times", "plain_ids",
        "empty_required_action", "partial_submissions", "metadata_underscore",
        "stream_replays_round", "api_v1_path",
    )
    assert POLL_HINTS == ("exact", "coarse", "off")
    with pytest.raises(ValueError, match="known quirks: list_order_by_second"):
        Simulator(quirks={"no_such_quirk"})
    with pytest.raises(ValueError, match="exact, coarse, off"):
        Simulator(poll_hints="sometimes")  # type: ignore[arg-type]


def test_list_order_by_second_lists_a_new_run_after_an_old_one_of_the_same_second() -> None:
    """With order=desc and limit=1, a client sees the finished run, not the new one."""
    world = QuirkyWorld({"list_order_by_second"})
    old = world.start()  # no rounds: completes at the first read
    world.sim.run(old)
    world.clock.advance(0.5)  # still the same second
    new = world.start([ECHO])
    newest = world.state.list_runs(world.thread_id, limit=1, order="desc")["data"]
    assert [run["id"] for run in newest] == [old]
    both = world.state.list_runs(world.thread_id, order="desc")["data"]
    assert [run["id"] for run in both] == [old, new]
    assert all(isinstance(run["created_at"], int) for run in both)
    world.submit_all(new)
    world.sim.run(new)  # completed
    world.clock.advance(1.0)  # a later second sorts first again
    later = world.start()
    assert world.state.list_runs(world.thread_id, limit=1)["data"][0]["id"] == later


def test_without_the_quirk_the_newest_run_comes_first() -> None:
    world = QuirkyWorld(())
    old = world.start()
    world.sim.run(old)
    new = world.start([ECHO])
    assert world.state.list_runs(world.thread_id, limit=1)["data"][0]["id"] == new


def test_late_submit_404() -> None:
    """A run that is no longer in requires_action answers a submission with 404."""
    world = QuirkyWorld({"late_submit_404"})
    run_id = world.start([ECHO])
    calls = world.sim.run(run_id)["required_action"]["submit_tool_outputs"]["tool_calls"]
    world.submit_all(run_id)
    late = {"tool_outputs": [{"tool_call_id": calls[0]["id"], "output": "again"}]}
    with pytest.raises(RequestRefused) as refused:
        world.state.submit_tool_outputs(world.thread_id, run_id, late)
    assert refused.value.status == 404
    assert [s.status for s in world.sim.submissions] == [200, 404]


def test_null_expiry_hides_expires_at_but_the_run_still_expires() -> None:
    world = QuirkyWorld({"null_expiry"}, expires_after_s=10.0)
    run_id = world.start([ECHO])
    assert world.sim.run(run_id)["expires_at"] is None
    world.clock.advance(10.0)
    assert world.sim.run(run_id)["status"] == "expired"
    assert world.sim.run(run_id)["expires_at"] is None


def test_float_times() -> None:
    world = QuirkyWorld({"float_times"})
    run = world.sim.run(world.start([ECHO]))
    times = [run[key] for key in ("created_at", "expires_at", "started_at")]
    assert all(isinstance(t, float) for t in times), times
    assert run["created_at"] == world.clock.now
    assert isinstance(world.state.retrieve_thread(world.thread_id)["created_at"], float)


def test_plain_ids_are_uuids_without_prefixes() -> None:
    world = QuirkyWorld({"plain_ids"})
    run = world.sim.run(world.start([ECHO]))
    call_id = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    for value in (world.assistant_id, world.thread_id, run["id"], call_id):
        assert str(uuid.UUID(value)) == value
    again = QuirkyWorld({"plain_ids"})
    assert again.thread_id == world.thread_id  # still seeded


def test_empty_required_action_after_a_submission() -> None:
    world = QuirkyWorld({"empty_required_action"}, thinking_s=1.0)
    run_id = world.start([ECHO])
    assert world.sim.run(run_id)["required_action"] is None  # before any submission
    world.clock.advance(1.0)
    assert world.submit_all(run_id)["required_action"] == {}
    world.clock.advance(1.0)
    assert world.sim.run(run_id)["status"] == "completed"
    assert world.sim.run(run_id)["required_action"] == {}


def test_partial_submissions_move_the_run_on() -> None:
    """Outputs for some calls are accepted; the run goes to its next round, the rest unanswered."""
    world = QuirkyWorld({"partial_submissions"})
    run_id = world.start([ECHO, ECHO], [ECHO])
    first, _ = world.sim.run(run_id)["required_action"]["submit_tool_outputs"]["tool_calls"]
    partial = {"tool_outputs": [{"tool_call_id": first["id"], "output": "one"}]}
    assert world.state.submit_tool_outputs(world.thread_id, run_id, partial)["status"] == "queued"
    assert world.sim.state.run_record(run_id).round_index == 1
    assert world.sim.run(run_id)["status"] == "requires_action"
    unknown = {"tool_outputs": [{"tool_call_id": "call_nope", "output": "x"}]}
    with pytest.raises(RequestRefused, match="Expected tool outputs"):
        world.state.submit_tool_outputs(world.thread_id, run_id, unknown)


@pytest.mark.parametrize(("mode", "expected"), [("exact", "500"), ("coarse", "1000"), ("off", None)])
async def test_poll_hints(mode: str, expected: str | None) -> None:
    clock = FakeClock()
    async with Simulator(thinking_s=2.0, clock=clock, poll_hints=mode) as sim:  # type: ignore[arg-type]
        thread_id, assistant_id = sim.create_thread(), sim.create_assistant("demo")
        run_id = sim.create_run(thread_id, assistant_id, [[ECHO]])
        clock.advance(0.5)
        headers = {"Authorization": f"Bearer {sim.api_key}", "OpenAI-Beta": "assistants=v2"}
        async with aiohttp.ClientSession(headers=headers) as session, session.get(
            f"{sim.base_url}/threads/{thread_id}/runs/{run_id}"
        ) as response:
            assert response.status == 200
            assert response.headers.get("openai-poll-after-ms") == expected


@pytest.mark.parametrize("quirk", QUIRKS)
async def test_the_sdk_drives_a_run_under_each_quirk(quirk: str) -> None:
    """Whatever the quirk, the official SDK still parses every answer of a two-round run."""
    script = json.dumps([[{"name": "echo", "arguments": "{}"}], [{"name": "echo", "arguments": "{}"}]])
    async with Simulator(quirks={quirk}) as sim, openai.AsyncOpenAI(
        api_key=sim.api_key, base_url=sim.base_url, max_retries=0
    ) as client:
        assistant = await client.beta.assistants.create(model="gpt-4o")
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
        run = await client.beta.threads.runs.create(
            thread.id, assistant_id=assistant.id, metadata={"sim_rounds": script}
        )
        for _ in range(2):
            run = await client.beta.threads.runs.poll(run.id, thread_id=thread.id,
                                                      poll_interval_ms=10)
            assert run.status == "requires_action"
            assert run.required_action is not None
            calls = run.required_action.submit_tool_outputs.tool_calls
            run = await client.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=thread.id,
                tool_outputs=[{"tool_call_id": c.id, "output": "ok"} for c in calls],
            )
        run = await client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=10)
        assert run.status == "completed"
        listed = await client.beta.threads.runs.list(thread.id)
        assert [r.id for r in listed.data] == [run.id]


def test_simulate_command_refuses_an_unknown_quirk(capsys: pytest.CaptureFixture[str]) -> None:
    """`tool-worker simulate --quirk NAME` names the known quirks when NAME is not one."""
    from worker.cli import EXIT_CONFIG, main

    assert main(["simulate", "--port", "0", "--quirk", "plain_ids", "--quirk", "nope"]) == EXIT_CONFIG
    assert "known quirks: list_order_by_second" in capsys.readouterr().err

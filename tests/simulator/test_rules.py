"""The API's rules as the simulator keeps them, on a fake clock and without HTTP."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import pytest

from worker.simulator import ToolCallScript
from worker.simulator.state import ApiState
from worker.simulator.wire import RequestRefused, paginate, parse_sim_rounds

from .helpers import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable

ECHO = ToolCallScript("echo", '{"text": "hi"}')
SLEEP = ToolCallScript("sleep", '{"seconds": 0.1}')
BROKEN = ToolCallScript("echo", '{"text": ')  # the model can write invalid JSON
CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")


class World:
    """A state on a fake clock, with one assistant and one thread."""

    def __init__(self, thinking_s: float = 0.0, expires_after_s: float = 600.0) -> None:
        self.clock = FakeClock()
        self.state = ApiState(
            thinking_s=thinking_s,
            expires_after_s=expires_after_s,
            clock=self.clock,
            monotonic=self.clock,
        )
        self.assistant_id = self.state.create_assistant({"name": "demo"})["id"]
        self.thread_id = self.state.create_thread()["id"]

    def start(self, *rounds: list[ToolCallScript], **kwargs: Any) -> str:
        params = {"assistant_id": self.assistant_id}
        return str(self.state.create_run(self.thread_id, params, list(rounds), **kwargs)["id"])

    def read(self, run_id: str) -> dict[str, Any]:
        return self.state.retrieve_run(self.thread_id, run_id)

    def call_ids(self, run_id: str) -> list[str]:
        run = self.read(run_id)
        return [c["id"] for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]]

    def submit(self, run_id: str, body: object = None) -> dict[str, Any]:
        if body is None:
            outputs = [{"tool_call_id": i, "output": "ok"} for i in self.call_ids(run_id)]
            body = {"tool_outputs": outputs}
        return self.state.submit_tool_outputs(self.thread_id, run_id, body)


def test_run_goes_through_its_rounds_with_thinking_time() -> None:
    world = World(thinking_s=2.0)
    t0 = world.clock.now
    run_id = world.start([ECHO, SLEEP], [BROKEN])

    run = world.read(run_id)
    assert (run["status"], run["started_at"], run["required_action"], run["usage"]) == (
        "queued", None, None, None,
    )
    assert run["expires_at"] == math.floor(t0 + 600)
    # Binary fractions only, so the fake clock lands exactly on each boundary.
    world.clock.advance(0.75)
    assert world.read(run_id)["status"] == "queued"
    world.clock.advance(0.25)
    run = world.read(run_id)
    assert (run["status"], run["started_at"]) == ("in_progress", math.floor(t0 + 1.0))
    world.clock.advance(1.0)
    run = world.read(run_id)
    assert run["status"] == "requires_action"
    calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [(c["type"], c["function"]) for c in calls] == [
        ("function", {"name": "echo", "arguments": '{"text": "hi"}'}),
        ("function", {"name": "sleep", "arguments": '{"seconds": 0.1}'}),
    ]
    assert all(CALL_ID.match(c["id"]) for c in calls)
    assert world.state.rounds_visible == {(run_id, 0): t0 + 2.0}

    first_ids = world.call_ids(run_id)
    answer = world.submit(run_id)
    assert (answer["status"], answer["required_action"]) == ("queued", None)
    world.clock.advance(1.0)
    assert world.read(run_id)["status"] == "in_progress"
    world.clock.advance(1.0)
    run = world.read(run_id)
    assert run["status"] == "requires_action"
    second_calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert second_calls[0]["function"]["arguments"] == '{"text": '
    assert not set(world.call_ids(run_id)) & set(first_ids)

    world.submit(run_id)
    world.clock.advance(2.0)
    run = world.read(run_id)
    assert run["status"] == "completed"
    assert run["completed_at"] == math.floor(world.clock.now)
    assert run["expires_at"] is None
    assert run["usage"] is not None
    messages = world.state.list_messages(world.thread_id)["data"]
    assert (messages[0]["role"], messages[0]["run_id"]) == ("assistant", run_id)
    assert [s.round_index for s in world.state.submissions] == [0, 1]


def test_zero_thinking_time_moves_on_at_the_first_read() -> None:
    world = World()
    created = world.state.create_run(
        world.thread_id, {"assistant_id": world.assistant_id}, [[ECHO]]
    )
    assert created["status"] == "queued"  # the API always answers a create with queued
    run = world.read(created["id"])
    assert run["status"] == "requires_action"
    assert run["started_at"] == math.floor(world.clock.now)


def test_unscripted_run_completes_without_tool_calls() -> None:
    world = World(thinking_s=1.0)
    run_id = world.start()
    world.clock.advance(1.0)
    run = world.read(run_id)
    assert (run["status"], run["required_action"]) == ("completed", None)
    assert world.state.submissions == []


def test_run_expires_at_the_precise_time_and_then_refuses_outputs() -> None:
    world = World(expires_after_s=10.0)
    world.clock.now = 1_700_000_000.75
    run_id = world.start([ECHO])
    assert world.read(run_id)["expires_at"] == 1_700_000_010  # floored in the JSON
    world.clock.advance(9.5)  # past the floored second, not yet at the precise time
    assert world.read(run_id)["status"] == "requires_action"
    call_ids = world.call_ids(run_id)
    world.clock.advance(0.5)
    run = world.read(run_id)
    assert (run["status"], run["required_action"]) == ("expired", None)
    assert run["expires_at"] == 1_700_000_010

    body = {"tool_outputs": [{"tool_call_id": call_ids[0], "output": "late"}]}
    with pytest.raises(RequestRefused, match='Runs in status "expired" do not accept tool outputs.'):
        world.submit(run_id, body)
    assert world.state.submissions[-1].status == 400


def test_run_can_expire_while_thinking() -> None:
    world = World(thinking_s=30.0, expires_after_s=10.0)
    run_id = world.start([ECHO])
    world.clock.advance(60.0)
    assert world.read(run_id)["status"] == "expired"
    assert world.state.rounds_visible == {}


def test_expiry_can_be_set_per_run() -> None:
    world = World(expires_after_s=600.0)
    run_id = world.start([ECHO], expires_after_s=5.0)
    world.clock.advance(5.0)
    assert world.read(run_id)["status"] == "expired"


def test_a_thread_has_at_most_one_active_run() -> None:
    world = World()
    run_id = world.start([ECHO])
    with pytest.raises(RequestRefused) as refused:
        world.start([ECHO])
    assert isinstance(refused.value, ValueError)
    assert refused.value.status == 400
    assert refused.value.message == f"Thread {world.thread_id} already has an active run {run_id}."

    other_thread = world.state.create_thread()["id"]
    world.state.create_run(other_thread, {"assistant_id": world.assistant_id})
    world.state.cancel_run(world.thread_id, run_id)
    world.start([ECHO])  # the cancelled run no longer blocks the thread


def test_messages_are_refused_while_a_run_is_active() -> None:
    world = World()
    run_id = world.start([ECHO])
    with pytest.raises(RequestRefused, match=f"while a run {run_id} is active"):
        world.state.create_message(world.thread_id, {"role": "user", "content": "more"})


def test_cancel_goes_through_cancelling_and_refuses_terminal_runs() -> None:
    world = World()
    run_id = world.start([ECHO])
    world.read(run_id)
    answer = world.state.cancel_run(world.thread_id, run_id)
    assert (answer["status"], answer["required_action"]) == ("cancelling", None)
    run = world.read(run_id)
    assert (run["status"], run["cancelled_at"]) == ("cancelled", math.floor(world.clock.now))
    with pytest.raises(RequestRefused, match="Cannot cancel run with status 'cancelled'."):
        world.state.cancel_run(world.thread_id, run_id)

    done = world.start()
    assert world.read(done)["status"] == "completed"
    with pytest.raises(RequestRefused, match="Cannot cancel run with status 'completed'."):
        world.state.cancel_run(world.thread_id, done)


def _outputs(*pairs: tuple[object, object]) -> dict[str, Any]:
    return {"tool_outputs": [{"tool_call_id": i, "output": o} for i, o in pairs]}


BAD_SUBMISSIONS: dict[str, tuple[Callable[[str, str], object], str]] = {
    "missing id": (lambda a, b: _outputs((a, "x")), "Expected tool outputs for call_ids"),
    "unknown id": (
        lambda a, b: _outputs((a, "x"), (b, "y"), ("call_unknown", "z")),
        "Expected tool outputs for call_ids",
    ),
    "repeated id": (lambda a, b: _outputs((a, "x"), (a, "x"), (b, "y")), "got ["),
    "output not a string": (
        lambda a, b: _outputs((a, 1), (b, "y")),
        "Invalid type for 'tool_outputs[0].output': expected a string, but got an integer",
    ),
    "output null": (lambda a, b: _outputs((a, "x"), (b, None)), "tool_outputs[1].output"),
    "id not a string": (lambda a, b: _outputs((7, "x"), (b, "y")), "tool_outputs[0].tool_call_id"),
    "extra field": (
        lambda a, b: {**_outputs((a, "x"), (b, "y")), "assistant_id": "asst_x"},
        "Unknown parameter: 'assistant_id'.",
    ),
    "extra item field": (
        lambda a, b: {"tool_outputs": [
            {"tool_call_id": a, "output": "x", "name": "echo"}, {"tool_call_id": b, "output": "y"},
        ]},
        "Unknown parameter: 'tool_outputs[0].name'.",
    ),
    "missing output": (
        lambda a, b: {"tool_outputs": [{"tool_call_id": a}, {"tool_call_id": b, "output": "y"}]},
        "Missing required parameter: 'tool_outputs[0].output'.",
    ),
    "no tool_outputs": (lambda a, b: {}, "Missing required parameter: 'tool_outputs'."),
    "tool_outputs not an array": (lambda a, b: {"tool_outputs": "x"}, "expected an array"),
    "body not an object": (lambda a, b: [a, b], "expected an object"),
    "stream not a boolean": (
        lambda a, b: {**_outputs((a, "x"), (b, "y")), "stream": "yes"},
        "Invalid type for 'stream': expected a boolean",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SUBMISSIONS))
def test_bad_submission_is_refused_whole_and_recorded(case: str) -> None:
    world = World()
    run_id = world.start([ECHO, SLEEP])
    a, b = world.call_ids(run_id)
    make_body, message = BAD_SUBMISSIONS[case]

    with pytest.raises(RequestRefused, match=re.escape(message)) as refused:
        world.submit(run_id, make_body(a, b))

    assert refused.value.status == 400
    assert world.call_ids(run_id) == [a, b]  # nothing applied
    recorded = world.state.submissions[-1]
    assert (recorded.status, recorded.round_index, recorded.error) == (400, 0, refused.value.message)


def test_stream_false_is_accepted() -> None:
    world = World()
    run_id = world.start([ECHO])
    (call_id,) = world.call_ids(run_id)
    world.submit(run_id, {**_outputs((call_id, "x")), "stream": False})
    assert world.state.submissions[-1].tool_outputs == ((call_id, "x"),)


def test_submission_outside_requires_action_is_refused() -> None:
    world = World(thinking_s=2.0)
    run_id = world.start([ECHO])
    with pytest.raises(RequestRefused, match='Runs in status "queued" do not accept tool outputs.'):
        world.submit(run_id, _outputs(("call_x", "x")))
    assert world.state.submissions[-1].round_index is None


def test_a_second_submission_of_the_same_round_is_refused() -> None:
    world = World(thinking_s=2.0)
    run_id = world.start([ECHO])
    world.clock.advance(2.0)
    (call_id,) = world.call_ids(run_id)
    world.submit(run_id, _outputs((call_id, "first")))
    with pytest.raises(RequestRefused, match='Runs in status "queued"'):
        world.submit(run_id, _outputs((call_id, "second")))
    assert [s.status for s in world.state.submissions] == [200, 400]
    assert len([s for s in world.state.submissions if s.status == 200]) == 1


def test_unknown_ids_are_404() -> None:
    world = World()
    run_id = world.start([ECHO])
    other_thread = world.state.create_thread()["id"]
    with pytest.raises(RequestRefused, match="No thread found with id 'thread_nope'.") as refused:
        world.state.retrieve_run("thread_nope", run_id)
    assert refused.value.status == 404
    with pytest.raises(RequestRefused, match=f"No run found with id '{run_id}'."):
        world.state.retrieve_run(other_thread, run_id)  # runs belong to their thread
    with pytest.raises(RequestRefused, match="No assistant found with id 'asst_nope'."):
        world.state.create_run(other_thread, {"assistant_id": "asst_nope"})
    with pytest.raises(RequestRefused, match="No run found with id 'run_nope'."):
        world.state.submit_tool_outputs(world.thread_id, "run_nope", _outputs(("c", "x")))
    assert world.state.submissions[-1].status == 404


def test_ids_are_seeded() -> None:
    def ids(seed: int) -> list[str]:
        state = ApiState(seed=seed)
        assistant = state.create_assistant({})["id"]
        thread = state.create_thread()["id"]
        run = state.create_run(thread, {"assistant_id": assistant}, [[ECHO]])["id"]
        calls = state.retrieve_run(thread, run)["required_action"]["submit_tool_outputs"]
        return [assistant, thread, run, calls["tool_calls"][0]["id"]]

    assert ids(1) == ids(1)
    assert ids(1) != ids(2)
    assert [i.split("_")[0] for i in ids(1)] == ["asst", "thread", "run", "call"]


def test_polling_hint_tells_when_the_run_changes_next() -> None:
    world = World(thinking_s=1.0)
    run_id = world.start([ECHO])
    assert world.state.poll_after_ms(run_id) == 500
    world.clock.advance(0.75)
    world.read(run_id)
    assert world.state.poll_after_ms(run_id) == 250
    world.clock.advance(0.25)
    world.read(run_id)
    assert world.state.poll_after_ms(run_id) is None  # requires_action waits for us


def test_sim_rounds_script() -> None:
    text = '[[{"name": "echo", "arguments": "{\\"text\\": \\"hi\\"}"}], [{"name": "sleep", ' \
           '"arguments": {"seconds": 1}}]]'
    assert parse_sim_rounds(text) == (
        (ToolCallScript("echo", '{"text": "hi"}'),),
        (ToolCallScript("sleep", '{"seconds": 1}'),),
    )
    assert parse_sim_rounds(None) == ()
    for bad in ("not json", '{"name": "echo"}', '[[{"name": "echo"}]]', "[1]"):
        with pytest.raises(RequestRefused, match="metadata.sim_rounds"):
            parse_sim_rounds(bad)
    world = World()
    with pytest.raises(RequestRefused, match="at least one tool call"):
        world.start([])


def _objects(count: int) -> list[dict[str, str]]:
    return [{"id": f"obj_{n}"} for n in range(1, count + 1)]


def _page_ids(page: dict[str, Any]) -> tuple[list[str], bool]:
    return [o["id"] for o in page["data"]], page["has_more"]


def test_pagination_walks_forward_with_after_and_back_with_before() -> None:
    objects = _objects(5)  # oldest first
    first = paginate(objects, limit=2)
    assert _page_ids(first) == (["obj_5", "obj_4"], True)
    assert (first["first_id"], first["last_id"]) == ("obj_5", "obj_4")
    assert _page_ids(paginate(objects, limit=2, after="obj_4")) == (["obj_3", "obj_2"], True)
    assert _page_ids(paginate(objects, limit=2, after="obj_2")) == (["obj_1"], False)
    assert _page_ids(paginate(objects, limit=2, before="obj_2")) == (["obj_4", "obj_3"], True)
    assert _page_ids(paginate(objects, limit=2, before="obj_4")) == (["obj_5"], False)
    assert _page_ids(paginate(objects, order="asc", limit=3)) == (["obj_1", "obj_2", "obj_3"], True)
    assert _page_ids(paginate(objects, order="asc", after="obj_1", before="obj_4")) == (
        ["obj_2", "obj_3"], False,
    )
    assert _page_ids(paginate(objects, limit=5)) == ([f"obj_{n}" for n in range(5, 0, -1)], False)


def test_empty_page_has_null_cursors_like_the_api() -> None:
    assert paginate([]) == {
        "object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False,
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": 0}, "Expected a value >= 1, but got 0 instead."),
        ({"limit": 101}, "Expected a value <= 100, but got 101 instead."),
        ({"order": "up"}, "Invalid value: 'up'. Supported values are: 'asc' and 'desc'."),
        ({"after": "obj_9"}, "Invalid 'after'"),
        ({"before": "obj_9"}, "Invalid 'before'"),
    ],
)
def test_pagination_refuses_bad_queries(query: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestRefused, match=re.escape(message)):
        paginate(_objects(3), **query)


def test_list_runs_pages_newest_first() -> None:
    world = World()
    run_ids = [world.start() for _ in range(3)]  # each completes at the next read
    page = world.state.list_runs(world.thread_id, limit=1)
    assert _page_ids(page) == ([run_ids[-1]], True)
    assert all(run["status"] == "completed" for run in world.state.list_runs(world.thread_id)["data"])


def test_the_azure_profile_takes_typed_outputs_and_openai_refuses_them() -> None:
    """Azure's outputs may say type "function_call_output"; OpenAI's have no type field."""
    from worker.simulator.wire import parse_tool_outputs

    body = {"tool_outputs": [{"tool_call_id": "call_a", "output": "x",
                              "type": "function_call_output"}]}
    assert parse_tool_outputs(body, typed=True) == (("call_a", "x"),)
    with pytest.raises(RequestRefused, match=re.escape("Unknown parameter: 'tool_outputs[0].type'")):
        parse_tool_outputs(body)
    wrong = {"tool_outputs": [{"tool_call_id": "call_a", "output": "x", "type": "mcp"}]}
    with pytest.raises(RequestRefused, match="expected 'function_call_output'"):
        parse_tool_outputs(wrong, typed=True)

"""A session's snapshot read as a Run: whatever the API sends, a Run or a BadAnswer comes out."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.api.session_wire import session_run
from worker.errors import BadAnswer
from worker.models import RunStatus

SESSION = "sess_1"


def session(**fields: Any) -> dict[str, Any]:
    actions = [{"type": "function_call", "call_id": "call_1", "turn_id": "turn_1",
                "name": "add", "arguments": {"a": 1}}]
    return {"id": SESSION, "status": "requires_action", "required_actions": actions,
            "created_at": 1_700_000_000, **fields}


@pytest.mark.parametrize("created_at", [10**400, -(10**400), float("nan"), float("inf"),
                                        True, "1700000000", None, [1]])
def test_a_created_at_no_float_can_hold_reads_as_unknown(created_at: object) -> None:
    """10**400 made float() raise OverflowError, which crashed the daemon."""
    run = session_run("retrieve", session(created_at=created_at), SESSION)
    assert run.created_at == 0.0
    assert run.call_ids == {"call_1"}


def test_created_at_as_the_json_parser_gives_it() -> None:
    data = json.loads('{"id": "sess_1", "status": "idle", "created_at": 1' + "0" * 400 + "}")
    assert session_run("retrieve", data, SESSION).created_at == 0.0
    data = json.loads('{"id": "sess_1", "status": "idle", "created_at": NaN}')
    assert session_run("retrieve", data, SESSION).created_at == 0.0


def test_arguments_nested_too_deeply_are_answered_as_invalid_not_a_crash() -> None:
    deep: Any = {}
    for _ in range(100_000):
        deep = {"a": deep}
    data = session()
    data["required_actions"][0]["arguments"] = deep
    [call] = session_run("retrieve", data, SESSION).tool_calls
    with pytest.raises(ValueError, match="Expecting value"):
        json.loads(call.arguments)  # the dispatcher answers it as invalid arguments


def test_the_asked_turn_is_read_when_two_turns_wait() -> None:
    """A server listing two turns' actions: asking for the second must not answer the first."""
    data = session()
    data["required_actions"].append({"type": "function_call", "call_id": "call_2",
                                     "turn_id": "turn_2", "name": "add", "arguments": {}})
    assert session_run("retrieve", data, SESSION).id == "turn_1"
    second = session_run("retrieve", data, SESSION, "turn_2")
    assert (second.id, second.call_ids) == ("turn_2", {"call_2"})
    assert session_run("retrieve", data, SESSION, "turn_9").id == "turn_1"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from([10**400, "call_1", "turn_1", "function_call", "requires_action"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "call_id", "turn_id", "name", "arguments", "status", "id",
                         "required_actions", "created_at", "metadata", "agent", "x"]),
        inner, max_size=6),
    max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(fields=st.dictionaries(
    st.sampled_from(["status", "required_actions", "created_at", "metadata", "agent", "x"]),
    JSON, max_size=5))
def test_any_session_answer_is_a_run_or_a_bad_answer(fields: dict[str, Any]) -> None:
    try:
        run = session_run("retrieve", {"id": SESSION, **fields}, SESSION)
    except BadAnswer:
        return
    assert run.thread_id == SESSION
    assert math.isfinite(run.created_at)
    assert isinstance(run.status, RunStatus)

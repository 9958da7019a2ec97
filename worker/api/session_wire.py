"""The Agents API's sessions in the worker's words: a session's snapshot read as a Run.

A session (``agent.session``) is the "thread"; the turn whose ``function_call`` actions wait
for results is the "run", and those actions are the round's calls (``call_id`` is the tool
call id). A session that waits for nothing is a run without a round:

=================== =========================================================================
session ``status``  Run
=================== =========================================================================
requires_action     ``requires_action`` of the turn of the first action: ``function_call``
                    actions as ``submit_tool_outputs``, else ``mcp_approval_request`` ones as
                    ``submit_tool_approval``, else the action's own type (left alone)
in_progress         ``in_progress``; its id is the session's (the snapshot names no turn)
idle                ``completed``: the thread is idle until a new turn waits
failed              ``failed``
budget_reached      ``unknown``: paused until its spend limit is raised; watched, nothing to do
other               ``unknown``: a status of a later API version; watched, nothing to do
=================== =========================================================================
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from worker.errors import BadAnswer
from worker.ids import check_id
from worker.models import (
    APPROVAL_ACTION,
    Malformed,
    McpCall,
    Run,
    RunStatus,
    ToolCall,
    parse_metadata,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["SUBMIT_ACTION", "seconds", "session_run", "turn_status"]

SUBMIT_ACTION = "submit_tool_outputs"

_STATUSES = {
    "requires_action": RunStatus.REQUIRES_ACTION,
    "in_progress": RunStatus.IN_PROGRESS,
    "idle": RunStatus.COMPLETED,
    "failed": RunStatus.FAILED,
    # spend_control's limit is spent: nothing waits for the worker until the owner raises it.
    "budget_reached": RunStatus.UNKNOWN,
}
_TURN_STATUSES = {
    "queued": RunStatus.QUEUED,
    "in_progress": RunStatus.IN_PROGRESS,
    "waiting": RunStatus.REQUIRES_ACTION,
    "requires_action": RunStatus.REQUIRES_ACTION,
    "completed": RunStatus.COMPLETED,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
}


def session_run(endpoint: str, data: object, session_id: str, turn_id: str | None = None) -> Run:
    """The session in ``data`` as a Run of thread ``session_id``; of turn ``turn_id`` when
    actions of several turns are listed and some are that turn's.

    Raises:
        BadAnswer: it is not a session, another session than asked, or an action misses a
            field the worker needs.
    """
    try:
        return _session_run(data, session_id, turn_id)
    except ValueError as exc:  # Malformed, InvalidId
        raise BadAnswer(endpoint, str(exc)) from None


def turn_status(data: object) -> RunStatus:
    """A turn's ``status`` in the words of runs (``unknown`` when it has none we know)."""
    status = data.get("status") if isinstance(data, dict) else None
    return _TURN_STATUSES.get(str(status), RunStatus.UNKNOWN)


def _session_run(data: object, session_id: str, asked: str | None) -> Run:
    if not isinstance(data, dict):
        raise Malformed(f"the session is a {type(data).__name__}, not an object")
    got = check_id(data.get("id"), "session id")
    if got != session_id:
        # A gateway that mixes up answers: acting on it would answer another session's turn.
        raise Malformed(f"it is session {got!r}, not {session_id!r} as asked")
    actions = data.get("required_actions") or []
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise Malformed("required_actions is not a list of objects")
    status = _STATUSES.get(str(data.get("status")), RunStatus.UNKNOWN)
    agent = data.get("agent")
    agent_id = agent.get("id") if isinstance(agent, dict) else None
    run = Run(
        id=session_id, thread_id=session_id,
        assistant_id=agent_id if isinstance(agent_id, str) else "",
        status=status, expires_at=None, required_action_type=None, tool_calls=(),
        created_at=seconds(data.get("created_at")),
        metadata=parse_metadata(data.get("metadata")),
    )
    if status is not RunStatus.REQUIRES_ACTION or not actions:
        return run
    # A server may list the actions of more than one turn: the asked one is the one to read.
    own = [a for a in actions if asked is not None and a.get("turn_id") == asked]
    return _waiting(run, own or actions)


def _waiting(run: Run, actions: list[dict[str, Any]]) -> Run:
    """The run of the turn the session waits for: its function calls first, then approvals."""
    calls = [a for a in actions if a.get("type") == "function_call"]
    if calls:
        turn_id = check_id(calls[0].get("turn_id"), "turn_id")
        tool_calls = tuple(_tool_call(a) for a in calls if a.get("turn_id") == turn_id)
        return _replace(run, turn_id, SUBMIT_ACTION, tool_calls=tool_calls)
    requests = [a for a in actions if a.get("type") == "mcp_approval_request"]
    if requests:
        turn_id = check_id(requests[0].get("turn_id"), "turn_id")
        mcp = tuple(_mcp_call(a) for a in requests if a.get("turn_id") == turn_id)
        return _replace(run, turn_id, APPROVAL_ACTION, approval_calls=mcp)
    other = actions[0].get("type")
    turn = actions[0].get("turn_id")
    return _replace(run, turn if isinstance(turn, str) else run.id,
                    other if isinstance(other, str) else "unknown")


def _replace(run: Run, run_id: str, action: str, *, tool_calls: Sequence[ToolCall] = (),
             approval_calls: Sequence[McpCall] = ()) -> Run:
    return Run(
        id=check_id(run_id, "turn_id"), thread_id=run.thread_id, assistant_id=run.assistant_id,
        status=run.status, expires_at=None, required_action_type=action,
        tool_calls=tuple(tool_calls), created_at=run.created_at, metadata=run.metadata,
        approval_calls=tuple(approval_calls),
    )


def _tool_call(action: dict[str, Any]) -> ToolCall:
    name = action.get("name")
    if not isinstance(name, str):
        raise Malformed("a function_call action has no name")
    return ToolCall(id=check_id(action.get("call_id"), "call_id"), name=name,
                    arguments=_arguments_text(action.get("arguments")))


def _mcp_call(action: dict[str, Any]) -> McpCall:
    request = action.get("request")
    if not isinstance(request, dict):
        raise Malformed("an mcp_approval_request action has no request object")
    name, label = request.get("name"), request.get("server_label")
    return McpCall(id=check_id(action.get("request_id"), "request_id"),
                   name=name if isinstance(name, str) else "",
                   server_label=label if isinstance(label, str) else "",
                   arguments=_arguments_text(request.get("arguments")))


def seconds(value: object) -> float:
    """A timestamp as seconds; 0.0 (unknown) unless it is a finite number a float can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    try:  # an int past any float (10**400) raises here; NaN and Infinity are valid JSON to Python
        seconds = float(value)
    except OverflowError:
        return 0.0
    return seconds if math.isfinite(seconds) else 0.0


def _arguments_text(arguments: object) -> str:
    """The arguments as the JSON text handlers are given (the API sends an object; a string
    is taken as it is, as the official SDK does)."""
    if isinstance(arguments, str):
        return arguments
    try:
        return json.dumps({} if arguments is None else arguments, ensure_ascii=False)
    except (RecursionError, ValueError):
        # Nested past what can be written back: not JSON, so the call is answered as invalid
        # arguments (the model is told) instead of the whole turn failing to read.
        return "(arguments nested too deeply to read)"

"""The simulated account (`ApiState`): its runs, their rules, and the submissions they took."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from worker.simulator.approvals import (
    APPROVAL_ACTION,
    parse_tool_approvals,
    wrong_answer,
)
from worker.simulator.assistants import AssistantStore
from worker.simulator.run_script import default_rounds
from worker.simulator.runs import RunRecord, run_settings
from worker.simulator.store import Submission
from worker.simulator.threads import ThreadStore
from worker.simulator.wire import (
    RequestRefused,
    ToolCallScript,
    expect_round_ids,
    not_found,
    parse_sim_rounds,
    parse_tool_outputs,
    refuse,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["ApiState", "Submission"]


class ApiState(AssistantStore, ThreadStore):
    """The whole simulated account; every read first applies the transitions that time has made.

    Args:
        seed: the seed of every id.
        thinking_s: how long the "model" thinks before each round or the final answer.
        expires_after_s: how long after creation a run expires, unless the run says otherwise.
        clock: epoch seconds, for the API's timestamps and rules.
        monotonic: the clock of `Submission.at` and `rounds_visible`, for latency measurements.
        quirks: behaviours of other compatible servers (see `worker.simulator.quirks`).
        poll_hints: "exact", "coarse" or "off": what `poll_after_ms` tells.
    """

    def create_run(
        self,
        thread_id: str,
        params: Mapping[str, Any],
        rounds: Sequence[Sequence[ToolCallScript]] | None = None,
        expires_after_s: float | None = None,
        action_type: str = "submit_tool_outputs",
    ) -> dict[str, Any]:
        """Start a run; its rounds come from `rounds` or else from `metadata["sim_rounds"]`.

        Raises:
            RequestRefused: (a ValueError) unknown thread or assistant, or an active run.
        """
        self.retrieve_thread(thread_id)
        assistant = self.retrieve_assistant(params["assistant_id"])
        active = self.active_run(thread_id)
        if active is not None:
            raise refuse(f"Thread {thread_id} already has an active run {active.id}.")
        metadata = dict(params.get("metadata") or {})
        script = _script(rounds, metadata, run_settings(params, assistant, metadata)["tools"])
        for message in params.get("additional_messages") or ():
            self.append_message(thread_id, message)
        now = self.clock()
        lifetime_s = self.expires_after_s if expires_after_s is None else expires_after_s
        run = RunRecord(
            id=self.new_id("run_"),
            thread_id=thread_id,
            assistant_id=assistant["id"],
            created_at=self.now(),
            expires_at=now + lifetime_s,
            settings=run_settings(params, assistant, metadata),
            rounds=script,
            queued_since=now,
            action_type=action_type,
        )
        self._runs[run.id] = run
        self._thread_runs[thread_id].append(run.id)
        return self.render(run)

    def retrieve_run(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """The run as it is now."""
        run = self._run_of(thread_id, run_id)
        self.advance(run)
        return self.render(run)

    def list_runs(self, thread_id: str, **page: Any) -> dict[str, Any]:
        """A page of the thread's runs (`limit`, `order`, `after`, `before`)."""
        self.retrieve_thread(thread_id)
        self.advance_thread(thread_id)
        runs = [self.render(self._runs[run_id]) for run_id in self._thread_runs[thread_id]]
        return self.page(runs, **page)

    def modify_run(self, thread_id: str, run_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the run's metadata (the only field the API lets a client change)."""
        run = self._run_of(thread_id, run_id)
        self.advance(run)
        if params.get("metadata") is not None:
            run.settings["metadata"] = dict(params["metadata"])
        return self.render(run)

    def cancel_run(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """Ask a run to stop: it shows `cancelling`, and `cancelled` from the next read on."""
        run = self._run_of(thread_id, run_id)
        self.advance(run)
        if run.terminal or run.status == "cancelling":
            raise refuse(f"Cannot cancel run with status '{run.status}'.")
        run.status = "cancelling"
        run.cancelled_at = self.clock()
        run.tool_calls = ()
        self._emit_status(run)
        return self.render(run)

    def submit_tool_outputs(self, thread_id: str, run_id: str, body: object) -> dict[str, Any]:
        """Accept one output for every tool call of the current round, or refuse it all with a 400.

        The azure profile also takes `tool_approvals` for a round of MCP calls that wait for
        approval. Every attempt is recorded in `submissions`, refused or not.
        """
        round_index = None
        try:
            run = self._run_of(thread_id, run_id)
            self.advance(run)
            if run.status == "requires_action":
                round_index = run.round_index
            ids = self._answered_ids(run, body)
            expect_round_ids([call["id"] for call in run.tool_calls], ids,
                             partial="partial_submissions" in self.quirks)
        except RequestRefused as exc:
            self.record_submission(thread_id, run_id, body, round_index, exc)
            raise
        run.outputs.extend(_named_outputs(run, body))
        run.status = "queued"
        run.queued_since = self.clock()
        run.tool_calls = ()
        run.round_index += 1
        self.record_submission(thread_id, run_id, body, round_index, None)
        return self.render(run)

    def _answered_ids(self, run: RunRecord, body: object) -> list[str]:
        """The tool call ids a body answers, once it is known to fit the run's action."""
        approving = self.profile == "azure" and isinstance(body, dict) and "tool_approvals" in body
        if approving:
            ids = [i for i, _ in parse_tool_approvals(body)]
        else:  # on the openai profile, tool_approvals is an unknown parameter
            ids = [i for i, _ in parse_tool_outputs(body, typed=self.profile == "azure")]
        if run.status != "requires_action":
            raise self._late(run)
        # Assumed, not verified against the service: an answer of the other kind is a 400.
        if approving != (run.pending_action == APPROVAL_ACTION):
            raise wrong_answer(run.pending_action)
        return ids

    def _late(self, run: RunRecord) -> RequestRefused:
        message = f'Runs in status "{run.status}" do not accept tool outputs.'
        if "late_submit_404" in self.quirks:
            return RequestRefused(404, message)
        return refuse(message)

    def record_submission(
        self,
        thread_id: str,
        run_id: str,
        body: object,
        round_index: int | None,
        refused: RequestRefused | None,
    ) -> None:
        """Record a submit_tool_outputs attempt, keeping whatever pairs the body holds."""
        pairs = _pairs(body, "tool_outputs", "output")
        approvals = _pairs(body, "tool_approvals", "approve")
        self.submissions.append(
            Submission(
                thread_id=thread_id,
                run_id=run_id,
                round_index=round_index,
                tool_outputs=tuple((i, o if isinstance(o, str) else repr(o)) for i, o in pairs),
                status=200 if refused is None else refused.status,
                error=None if refused is None else refused.message,
                at=self.monotonic(),
                body=body,
                tool_approvals=tuple((i, a) for i, a in approvals if isinstance(a, bool)),
            )
        )

    def run(self, run_id: str) -> dict[str, Any]:
        """The run as it is now, found by id alone."""
        return self.render(self.run_record(run_id))

    def run_record(self, run_id: str) -> RunRecord:
        """The run's record as it is now, found by id alone, or a 404."""
        run = self._runs.get(run_id)
        if run is None:
            raise not_found("run", run_id)
        self.advance(run)
        return run

    def all_runs_terminal(self) -> bool:
        """Whether every run has reached a terminal status."""
        self.advance_all()
        return all(run.terminal for run in self._runs.values())

    def poll_after_ms(self, run_id: str) -> int | None:
        """When the run will next change by itself, as a polling hint, or None if it will not.

        With `poll_hints="coarse"` the hint is 1000 ms whenever the run is thinking, and with
        "off" there is none.
        """
        change_at = self.next_change_at(self._runs[run_id])
        if change_at is None or self.poll_hints == "off":
            return None
        if self.poll_hints == "coarse":
            return 1000
        return min(max(math.ceil((change_at - self.clock()) * 1000), 1), 1000)

    def _run_of(self, thread_id: str, run_id: str) -> RunRecord:
        self.retrieve_thread(thread_id)
        run = self._runs.get(run_id)
        if run is None or run.thread_id != thread_id:
            raise not_found("run", run_id)
        return run


def _pairs(body: object, key: str, value: str) -> tuple[tuple[str, object], ...]:
    """(tool_call_id, item[value]) of each well-formed item of body[key], for the record."""
    items = body.get(key) if isinstance(body, dict) else None
    return tuple(
        (item["tool_call_id"], item.get(value))
        for item in (items if isinstance(items, list) else ())
        if isinstance(item, dict) and isinstance(item.get("tool_call_id"), str)
    )


def _named_outputs(run: RunRecord, body: object) -> list[tuple[int, str, str]]:
    """(round, tool name, output) of each output the body gives the run's current round."""
    names = {call["id"]: (call.get("function") or call).get("name", "?") for call in run.tool_calls}
    return [(run.round_index, str(names.get(call_id, "?")),
             output if isinstance(output, str) else json.dumps(output))
            for call_id, output in _pairs(body, "tool_outputs", "output")]


def _script(
    rounds: Sequence[Sequence[ToolCallScript]] | None, metadata: Mapping[str, str],
    tools: Sequence[Mapping[str, Any]],
) -> tuple[tuple[ToolCallScript, ...], ...]:
    """The run's rounds: those given, else `metadata["sim_rounds"]`, else one round calling
    each function tool of the run once (see `default_rounds`); none may be empty."""
    if rounds is None:
        rounds = (parse_sim_rounds(metadata["sim_rounds"]) if "sim_rounds" in metadata
                  else default_rounds(tools))
    script = tuple(tuple(round_) for round_ in rounds)
    if any(not round_ for round_ in script):
        raise refuse("Each scripted round needs at least one tool call.", param="metadata")
    if any(len({call.server_label is None for call in round_}) > 1 for round_ in script):
        raise refuse("A scripted round is all MCP calls (with server_label) or none.",
                     param="metadata")
    return script

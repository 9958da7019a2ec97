"""Threads, messages, assistants and runs of the simulated API, and the rules the API keeps."""

from __future__ import annotations

import math
import random
import string
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.simulator.runs import THINKING_STATUSES, RunRecord, run_settings
from worker.simulator.wire import (
    RequestRefused,
    ToolCallScript,
    expect_round_ids,
    not_found,
    paginate,
    parse_sim_rounds,
    parse_tool_outputs,
    refuse,
    text_content,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["ApiState", "Submission"]

_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Submission:
    """One submit_tool_outputs request that reached the simulator, and how it was answered."""

    thread_id: str
    run_id: str
    round_index: int | None
    tool_outputs: tuple[tuple[str, str], ...]
    status: int
    error: str | None
    at: float


class ApiState:
    """The whole simulated account; every read first applies the transitions that time has made.

    Args:
        seed: the seed of every id.
        thinking_s: how long the "model" thinks before each round or the final answer.
        expires_after_s: how long after creation a run expires, unless the run says otherwise.
        clock: epoch seconds, for the API's timestamps and rules.
        monotonic: the clock of `Submission.at` and `rounds_visible`, for latency measurements.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        thinking_s: float = 0.0,
        expires_after_s: float = 600.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.thinking_s = thinking_s
        self.expires_after_s = expires_after_s
        self.clock = clock
        self.monotonic = monotonic
        self.submissions: list[Submission] = []
        self.rounds_visible: dict[tuple[str, int], float] = {}
        self._rng = random.Random(seed)  # noqa: S311 - seeded for reproducibility, not secrecy
        self._assistants: dict[str, dict[str, Any]] = {}
        self._threads: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._thread_runs: dict[str, list[str]] = {}
        self._runs: dict[str, RunRecord] = {}

    def new_id(self, prefix: str) -> str:
        """A fresh id like the API's: `prefix` and 24 seeded-random alphanumerics."""
        return prefix + "".join(self._rng.choices(_ID_ALPHABET, k=24))

    # assistants

    def create_assistant(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Create an assistant from already validated request fields."""
        assistant: dict[str, Any] = {
            "id": self.new_id("asst_"),
            "object": "assistant",
            "created_at": math.floor(self.clock()),
            "name": None,
            "description": None,
            "model": "gpt-4o",
            "instructions": None,
            "tools": [],
            "tool_resources": {},
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "response_format": "auto",
        }
        self._assistants[assistant["id"]] = assistant
        return self.modify_assistant(assistant["id"], params)

    def retrieve_assistant(self, assistant_id: str) -> dict[str, Any]:
        """The assistant, or a 404."""
        assistant = self._assistants.get(assistant_id)
        if assistant is None:
            raise not_found("assistant", assistant_id)
        return assistant

    def modify_assistant(self, assistant_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Overwrite the given fields; fields the object does not show are accepted and dropped."""
        assistant = self.retrieve_assistant(assistant_id)
        assistant.update((k, v) for k, v in params.items() if k in assistant and v is not None)
        return assistant

    def list_assistants(self, **page: Any) -> dict[str, Any]:
        """A page of assistants (`limit`, `order`, `after`, `before`)."""
        return paginate(list(self._assistants.values()), **page)

    # threads and messages

    def create_thread(
        self,
        messages: Sequence[Mapping[str, Any]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a thread, optionally with its first messages."""
        thread: dict[str, Any] = {
            "id": self.new_id("thread_"),
            "object": "thread",
            "created_at": math.floor(self.clock()),
            "tool_resources": {},
            "metadata": dict(metadata or {}),
        }
        self._threads[thread["id"]] = thread
        self._messages[thread["id"]] = []
        self._thread_runs[thread["id"]] = []
        for message in messages:
            self._append_message(thread["id"], message)
        return thread

    def list_threads(self, **page: Any) -> dict[str, Any]:
        """A page of threads; Azure's Agent Service lists them, the OpenAI API does not."""
        return paginate(list(self._threads.values()), **page)

    def retrieve_thread(self, thread_id: str) -> dict[str, Any]:
        """The thread, or a 404."""
        thread = self._threads.get(thread_id)
        if thread is None:
            raise not_found("thread", thread_id)
        return thread

    def create_message(self, thread_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Add a message; the API refuses while a run of the thread is active."""
        self.retrieve_thread(thread_id)
        active = self._active_run(thread_id)
        if active is not None:
            raise refuse(f"Can't add messages to {thread_id} while a run {active.id} is active.")
        return self._append_message(thread_id, params)

    def list_messages(self, thread_id: str, run_id: str | None = None, **page: Any) -> dict[str, Any]:
        """A page of the thread's messages, optionally only those a run wrote."""
        self.retrieve_thread(thread_id)
        self._advance_thread(thread_id)
        messages = self._messages[thread_id]
        if run_id is not None:
            messages = [m for m in messages if m["run_id"] == run_id]
        return paginate(messages, **page)

    def _append_message(
        self,
        thread_id: str,
        params: Mapping[str, Any],
        *,
        at: float | None = None,
        run: RunRecord | None = None,
    ) -> dict[str, Any]:
        created_at = math.floor(self.clock() if at is None else at)
        message = {
            "id": self.new_id("msg_"),
            "object": "thread.message",
            "created_at": created_at,
            "thread_id": thread_id,
            "status": "completed",
            "incomplete_details": None,
            "completed_at": created_at if run is not None else None,
            "incomplete_at": None,
            "role": params.get("role", "user"),
            "content": text_content(params.get("content", "")),
            "assistant_id": run.assistant_id if run is not None else None,
            "run_id": run.id if run is not None else None,
            "attachments": list(params.get("attachments") or []),
            "metadata": dict(params.get("metadata") or {}),
        }
        self._messages[thread_id].append(message)
        return message

    # runs

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
        active = self._active_run(thread_id)
        if active is not None:
            raise refuse(f"Thread {thread_id} already has an active run {active.id}.")
        metadata = dict(params.get("metadata") or {})
        if rounds is None:
            rounds = parse_sim_rounds(metadata.get("sim_rounds"))
        script = tuple(tuple(round_) for round_ in rounds)
        if any(not round_ for round_ in script):
            raise refuse("Each scripted round needs at least one tool call.", param="metadata")
        for message in params.get("additional_messages") or ():
            self._append_message(thread_id, message)
        now = self.clock()
        lifetime_s = self.expires_after_s if expires_after_s is None else expires_after_s
        run = RunRecord(
            id=self.new_id("run_"),
            thread_id=thread_id,
            assistant_id=assistant["id"],
            created_at=now,
            expires_at=now + lifetime_s,
            settings=run_settings(params, assistant, metadata),
            rounds=script,
            queued_since=now,
            action_type=action_type,
        )
        self._runs[run.id] = run
        self._thread_runs[thread_id].append(run.id)
        return run.render()

    def retrieve_run(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """The run as it is now."""
        run = self._run_of(thread_id, run_id)
        self._advance(run)
        return run.render()

    def list_runs(self, thread_id: str, **page: Any) -> dict[str, Any]:
        """A page of the thread's runs (`limit`, `order`, `after`, `before`)."""
        self.retrieve_thread(thread_id)
        self._advance_thread(thread_id)
        runs = [self._runs[run_id].render() for run_id in self._thread_runs[thread_id]]
        return paginate(runs, **page)

    def cancel_run(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """Ask a run to stop: it shows `cancelling`, and `cancelled` from the next read on."""
        run = self._run_of(thread_id, run_id)
        self._advance(run)
        if run.terminal or run.status == "cancelling":
            raise refuse(f"Cannot cancel run with status '{run.status}'.")
        run.status = "cancelling"
        run.cancelled_at = self.clock()
        run.tool_calls = ()
        return run.render()

    def submit_tool_outputs(self, thread_id: str, run_id: str, body: object) -> dict[str, Any]:
        """Accept one output for every tool call of the current round, or refuse it all with a 400.

        Every attempt is recorded in `submissions`, refused or not.
        """
        round_index = None
        try:
            run = self._run_of(thread_id, run_id)
            self._advance(run)
            if run.status == "requires_action":
                round_index = run.round_index
            outputs = parse_tool_outputs(body)
            if run.status != "requires_action":
                raise refuse(f'Runs in status "{run.status}" do not accept tool outputs.')
            expect_round_ids([call["id"] for call in run.tool_calls], [i for i, _ in outputs])
        except RequestRefused as exc:
            self.record_submission(thread_id, run_id, body, round_index, exc)
            raise
        run.status = "queued"
        run.queued_since = self.clock()
        run.tool_calls = ()
        run.round_index += 1
        self.record_submission(thread_id, run_id, body, round_index, None)
        return run.render()

    def record_submission(
        self,
        thread_id: str,
        run_id: str,
        body: object,
        round_index: int | None,
        refused: RequestRefused | None,
    ) -> None:
        """Record a submit_tool_outputs attempt, keeping whatever pairs the body holds."""
        items = body.get("tool_outputs") if isinstance(body, dict) else None
        pairs = tuple(
            (item["tool_call_id"], item.get("output"))
            for item in (items if isinstance(items, list) else ())
            if isinstance(item, dict) and isinstance(item.get("tool_call_id"), str)
        )
        self.submissions.append(
            Submission(
                thread_id=thread_id,
                run_id=run_id,
                round_index=round_index,
                tool_outputs=tuple((i, o if isinstance(o, str) else repr(o)) for i, o in pairs),
                status=200 if refused is None else refused.status,
                error=None if refused is None else refused.message,
                at=self.monotonic(),
            )
        )

    def run(self, run_id: str) -> dict[str, Any]:
        """The run as it is now, found by id alone."""
        run = self._runs.get(run_id)
        if run is None:
            raise not_found("run", run_id)
        self._advance(run)
        return run.render()

    def all_runs_terminal(self) -> bool:
        """Whether every run has reached a terminal status."""
        self.advance_all()
        return all(run.terminal for run in self._runs.values())

    def poll_after_ms(self, run_id: str) -> int | None:
        """When the run will next change by itself, as a polling hint, or None if it will not."""
        run = self._runs[run_id]
        if run.status not in THINKING_STATUSES:
            return None
        change_at = min(self._phase_ends(run), run.expires_at)
        return min(max(math.ceil((change_at - self.clock()) * 1000), 1), 1000)

    def _run_of(self, thread_id: str, run_id: str) -> RunRecord:
        self.retrieve_thread(thread_id)
        run = self._runs.get(run_id)
        if run is None or run.thread_id != thread_id:
            raise not_found("run", run_id)
        return run

    def _active_run(self, thread_id: str) -> RunRecord | None:
        self._advance_thread(thread_id)
        for run_id in self._thread_runs[thread_id]:
            if not self._runs[run_id].terminal:
                return self._runs[run_id]
        return None

    def _advance_thread(self, thread_id: str) -> None:
        for run_id in self._thread_runs[thread_id]:
            self._advance(self._runs[run_id])

    # lifecycle: transitions are applied lazily, at the moment they would have happened

    def advance_all(self) -> None:
        """Apply the transitions time has made to every run."""
        for run in self._runs.values():
            self._advance(run)

    def _phase_ends(self, run: RunRecord) -> float:
        if run.status == "queued" and self.thinking_s > 0:
            return run.queued_since + self.thinking_s / 2
        return run.queued_since + self.thinking_s

    def _advance(self, run: RunRecord) -> None:
        now = self.clock()
        if run.status == "cancelling":
            run.status = "cancelled"
            return
        while run.status in THINKING_STATUSES:
            phase_end = self._phase_ends(run)
            if phase_end > now or phase_end >= run.expires_at:
                break
            if run.status == "queued" and self.thinking_s > 0:
                run.status = "in_progress"
                run.started_at = phase_end if run.started_at is None else run.started_at
            else:
                self._think(run, phase_end)
        if not run.terminal and now >= run.expires_at:
            run.status = "expired"
            run.tool_calls = ()

    def _think(self, run: RunRecord, at: float) -> None:
        if run.started_at is None:
            run.started_at = at
        if run.round_index < len(run.rounds):
            run.status = "requires_action"
            run.tool_calls = tuple(
                {
                    "id": self.new_id("call_"),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in run.rounds[run.round_index]
            )
            self.rounds_visible[(run.id, run.round_index)] = self.monotonic() - (self.clock() - at)
            return
        run.status = "completed"
        run.completed_at = at
        rounds = len(run.rounds)
        answer = {"role": "assistant", "content": f"Done after {rounds} round(s) of tool calls."}
        self._append_message(run.thread_id, answer, at=at, run=run)

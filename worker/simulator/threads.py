"""Threads and messages of the simulated account."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.simulator.store import Store
from worker.simulator.wire import not_found, refuse

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["ThreadStore"]


class ThreadStore(Store):
    """The thread and message endpoints, without HTTP."""

    def create_thread(
        self,
        messages: Sequence[Mapping[str, Any]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a thread, optionally with its first messages."""
        thread: dict[str, Any] = {
            "id": self.new_id("thread_"),
            "object": "thread",
            "created_at": self.stamp(self.now()),
            "tool_resources": {},
            "metadata": dict(metadata or {}),
        }
        self._threads[thread["id"]] = thread
        self._messages[thread["id"]] = []
        self._thread_runs[thread["id"]] = []
        for message in messages:
            self.append_message(thread["id"], message)
        return thread

    def list_threads(self, **page: Any) -> dict[str, Any]:
        """A page of threads; Azure's Agent Service lists them, the OpenAI API does not."""
        return self.page(list(self._threads.values()), **page)

    def retrieve_thread(self, thread_id: str) -> dict[str, Any]:
        """The thread, or a 404."""
        thread = self._threads.get(thread_id)
        if thread is None:
            raise not_found("thread", thread_id)
        return thread

    def modify_thread(self, thread_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the thread's metadata and tool_resources with those given."""
        thread = self.retrieve_thread(thread_id)
        for key in ("metadata", "tool_resources"):
            if params.get(key) is not None:
                thread[key] = dict(params[key])
        return thread

    def delete_thread(self, thread_id: str) -> dict[str, Any]:
        """Forget the thread, its messages and its runs (an active run is gone too)."""
        self.retrieve_thread(thread_id)
        for run_id in self._thread_runs.pop(thread_id):
            del self._runs[run_id]
        del self._threads[thread_id], self._messages[thread_id]
        return {"id": thread_id, "object": "thread.deleted", "deleted": True}

    def create_message(self, thread_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Add a message; the API refuses while a run of the thread is active."""
        self.retrieve_thread(thread_id)
        active = self.active_run(thread_id)
        if active is not None:
            raise refuse(f"Can't add messages to {thread_id} while a run {active.id} is active.")
        return self.append_message(thread_id, params)

    def list_messages(self, thread_id: str, run_id: str | None = None, **page: Any) -> dict[str, Any]:
        """A page of the thread's messages, optionally only those a run wrote."""
        self.retrieve_thread(thread_id)
        self.advance_thread(thread_id)
        messages = self._messages[thread_id]
        if run_id is not None:
            messages = [m for m in messages if m["run_id"] == run_id]
        return self.page(messages, **page)

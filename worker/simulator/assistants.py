"""Assistants of the simulated account: create, retrieve, modify, list and delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.simulator.store import Store
from worker.simulator.wire import not_found

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["AssistantStore"]


class AssistantStore(Store):
    """The assistant endpoints, without HTTP."""

    def create_assistant(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Create an assistant from already validated request fields."""
        assistant: dict[str, Any] = {
            "id": self.new_id("asst_"),
            "object": "assistant",
            "created_at": self.stamp(self.now()),
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
        return self.page(list(self._assistants.values()), **page)

    def delete_assistant(self, assistant_id: str) -> dict[str, Any]:
        """Forget the assistant; its runs keep their copy of its settings, as the API's do."""
        self.retrieve_assistant(assistant_id)
        del self._assistants[assistant_id]
        return {"id": assistant_id, "object": "assistant.deleted", "deleted": True}

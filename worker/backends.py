"""BackendProfile: the only place request URLs and authentication headers are built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ApiSettings, Secret

__all__ = ["BackendProfile", "OpenAIProfile"]


class BackendProfile:
    """How to address and authenticate to one flavour of the Assistants protocol."""

    def url(self, path: str) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class OpenAIProfile(BackendProfile):
    """api.openai.com and every compatible server: bearer key plus ``OpenAI-Beta``."""

    base_url: str
    api_key: Secret
    organization: str | None = None
    project: str | None = None

    @classmethod
    def from_settings(cls, api: ApiSettings, api_key: Secret) -> OpenAIProfile:
        return cls(api.base_url.rstrip("/"), api_key, api.organization, api.project)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.api_key.get()}",
            "OpenAI-Beta": "assistants=v2",
            "Content-Type": "application/json",
        }
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

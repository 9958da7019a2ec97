"""BackendProfile: the only place request URLs and authentication headers are built.

Two flavours of the same threads/runs/submit_tool_outputs protocol:

* ``openai``: the Assistants API on every compatible server: ``{base_url}{path}``, a bearer key
  and ``OpenAI-Beta: assistants=v2``.
* ``azure``: Azure AI Foundry Agent Service, whose REST API "follows the same protocol as the
  Azure OpenAI Assistants API" (https://learn.microsoft.com/rest/api/aifoundry/aiagents). The
  base URL is the project endpoint,
  ``https://<resource>.services.ai.azure.com/api/projects/<project>``; every request carries
  ``?api-version=`` (``v1`` is the stable version; the azure-ai-agents SDK defaults to
  ``2025-05-15-preview``); authentication is a Microsoft Entra ID bearer token (the default:
  project endpoints take Entra ID) or, for gateways that take keys, an ``api-key`` header.
  Agents are served at ``/assistants``, and threads can be listed.

And one other protocol, sessions and turns:

* ``agents``: OpenAI's Agents API (beta): ``{base_url}{path}``, a bearer key and
  ``OpenAI-Beta: agents=v1`` (the header the official SDK's ``client.beta.agents`` sends).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import anyio

from worker.config.loading import missing_base_url
from worker.errors import ConfigError

if TYPE_CHECKING:
    from worker.config.secret import Secret
    from worker.config.settings import ApiSettings

__all__ = [
    "AgentsProfile",
    "AzureProfile",
    "BackendProfile",
    "EntraTokenSource",
    "OpenAIProfile",
    "TokenCredential",
    "auth_hint",
    "build_profile",
]


class BackendProfile(Protocol):
    """How to address and authenticate to one flavour of the Assistants protocol."""

    @property
    def tool_output_type(self) -> str | None:
        """The ``type`` each tool output carries, or None to send none."""

    def url(self, path: str) -> str: ...

    def query(self) -> dict[str, str]: ...

    async def headers(self) -> dict[str, str]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OpenAIProfile:
    """The Assistants API on a compatible server or gateway: bearer key plus ``OpenAI-Beta``."""

    base_url: str
    api_key: Secret
    organization: str | None = None
    project: str | None = None
    # OpenAI's SubmitToolOutputsRunRequest closes each output to tool_call_id and output.
    tool_output_type: ClassVar[str | None] = None

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def query(self) -> dict[str, str]:
        return {}

    async def headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.api_key.get()}",
            "OpenAI-Beta": "assistants=v2",
        }
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class AgentsProfile(OpenAIProfile):
    """OpenAI's Agents API: the same key and headers, with ``OpenAI-Beta: agents=v1``."""

    async def headers(self) -> dict[str, str]:
        headers = await OpenAIProfile.headers(self)
        headers["OpenAI-Beta"] = "agents=v1"
        return headers


class TokenCredential(Protocol):
    """What ``azure.identity.aio`` credentials offer; any object with it will do."""

    async def get_token(self, *scopes: str) -> Any: ...  # an AccessToken(token, expires_on)


@dataclass(slots=True)
class EntraTokenSource:
    """A Microsoft Entra ID token, fetched once and refreshed ahead of its expiry."""

    credential: TokenCredential
    scope: str
    refresh_before_s: float = 300.0
    _token: str | None = None
    _expires_on: float = 0.0
    _lock: anyio.Lock | None = None  # made on first use: an anyio Lock needs a running loop

    async def token(self) -> str:
        if self._stale():
            if self._lock is None:
                self._lock = anyio.Lock()
            async with self._lock:  # one refresh, however many requests wait for it
                if self._stale():
                    access = await self.credential.get_token(self.scope)
                    self._token, self._expires_on = str(access.token), float(access.expires_on)
        assert self._token is not None  # noqa: S101 - set above when it was stale
        return self._token

    def _stale(self) -> bool:
        return self._token is None or time.time() >= self._expires_on - self.refresh_before_s

    async def aclose(self) -> None:
        close = getattr(self.credential, "close", None)
        if close is not None:
            await close()


@dataclass(frozen=True, slots=True)
class AzureProfile:
    """Azure AI Foundry Agent Service: project endpoint, ``api-version``, key or Entra token."""

    base_url: str
    api_version: str
    api_key: Secret | None = None
    tokens: EntraTokenSource | None = None
    # The agents service's ToolOutput is the "function_call_output" member of a union keyed
    # by `type` (its default is that same value); sent, so that no server has to guess.
    # azure-ai-agents, azure/ai/agents/models/_models.py, class ToolOutput(StructuredToolOutput,
    # discriminator="function_call_output") (Azure/azure-sdk-for-python, commit 043ad757).
    tool_output_type: ClassVar[str | None] = "function_call_output"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def query(self) -> dict[str, str]:
        return {"api-version": self.api_version}

    async def headers(self) -> dict[str, str]:
        if self.tokens is not None:
            return {"Authorization": f"Bearer {await self.tokens.token()}"}
        if self.api_key is None:
            raise ConfigError("backend azure with azure_auth = 'api_key' needs a key",
                              key="api.azure_auth")
        return {"api-key": self.api_key.get()}

    async def aclose(self) -> None:
        if self.tokens is not None:
            await self.tokens.aclose()


def build_profile(
    api: ApiSettings, api_key: Secret | None, *, credential: TokenCredential | None = None
) -> BackendProfile:
    """The profile the settings ask for.

    Raises:
        ConfigError: a key is missing, or Entra ID auth is asked for without azure-identity.
    """
    if api.base_url is None:
        raise ConfigError(missing_base_url(api), key="api.base_url")
    base_url = api.base_url.rstrip("/")
    if api.backend in ("openai", "agents"):
        if api_key is None:
            raise ConfigError("no API key: set OPENAI_API_KEY", key="api.api_key_file")
        kind = AgentsProfile if api.backend == "agents" else OpenAIProfile
        return kind(base_url, api_key, api.organization, api.project)
    if api.azure_auth == "api_key":
        if api_key is None:
            raise ConfigError("no API key: set AZURE_AI_API_KEY", key="api.api_key_file")
        return AzureProfile(base_url, api.api_version, api_key=api_key)
    tokens = EntraTokenSource(credential or _default_credential(), api.token_scope)
    return AzureProfile(base_url, api.api_version, tokens=tokens)


def auth_hint(api: ApiSettings) -> str:
    """What to check when the service refuses our credentials, for the one-line error."""
    if api.backend in ("openai", "agents"):
        return "set OPENAI_API_KEY or [api] api_key_file to a key this server accepts"
    if api.azure_auth == "api_key":
        return ("this endpoint usually wants Microsoft Entra ID, not a key: remove "
                "azure_auth = \"api_key\" (the default is \"entra\"), or check the key "
                "your gateway takes")
    return ("check that the identity DefaultAzureCredential found has the Azure AI User role "
            "on the Foundry project, and that [api] token_scope is right")


def _default_credential() -> TokenCredential:
    try:
        from azure.identity.aio import DefaultAzureCredential
    except ImportError:
        raise ConfigError(
            "azure_auth = \"entra\" (the default for backend = \"azure\") needs azure-identity: "
            "pip install 'tool-worker[azure]'; for a gateway that takes keys set "
            "azure_auth = \"api_key\"",
            key="api.azure_auth",
        ) from None
    credential: TokenCredential = DefaultAzureCredential()
    return credential

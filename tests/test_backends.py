"""Backend profiles: URLs, query, auth headers, and Entra ID tokens refreshed before expiry."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass

import pytest

from worker.api.backends import (
    AzureProfile,
    EntraTokenSource,
    OpenAIProfile,
    auth_hint,
    build_profile,
)
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import ConfigError

AZURE_URL = "https://my-resource.services.ai.azure.com/api/projects/my-project"


@dataclass
class Token:
    token: str
    expires_on: float


class Credential:
    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self.calls = 0

    async def get_token(self, *scopes: str) -> Token:
        self.calls += 1
        return Token(f"token-{self.calls}", time.time() + self.lifetime_s)


async def test_openai_profile_sends_bearer_beta_and_optional_org_headers() -> None:
    """The OpenAI profile authenticates with a bearer key and the assistants=v2 beta header."""
    profile = build_profile(ApiSettings(base_url="http://x/v1/", organization="org_1"),
                            Secret("sk-1"))
    assert isinstance(profile, OpenAIProfile)
    assert profile.url("/threads/t/runs") == "http://x/v1/threads/t/runs"
    assert profile.query() == {}
    assert await profile.headers() == {"Authorization": "Bearer sk-1",
                                       "OpenAI-Beta": "assistants=v2",
                                       "OpenAI-Organization": "org_1"}


async def test_azure_profile_sends_api_version_and_api_key() -> None:
    """The Azure profile puts api-version on every request and the key in an api-key header."""
    api = ApiSettings(backend="azure", base_url="https://r.services.ai.azure.com/api/projects/p",
                      api_version="2025-05-15-preview", azure_auth="api_key")
    profile = build_profile(api, Secret("k-1"))
    assert isinstance(profile, AzureProfile)
    assert profile.url("/threads") == "https://r.services.ai.azure.com/api/projects/p/threads"
    assert profile.query() == {"api-version": "2025-05-15-preview"}
    assert await profile.headers() == {"api-key": "k-1"}


async def test_entra_tokens_are_cached_until_close_to_expiry() -> None:
    """A token is reused while fresh and fetched again within refresh_before_s of expiry."""
    fresh = Credential(lifetime_s=3600)
    source = EntraTokenSource(fresh, "scope/.default")
    assert [await source.token() for _ in range(3)] == ["token-1"] * 3
    assert fresh.calls == 1
    short = Credential(lifetime_s=60)  # inside the 300 s refresh window at once
    source = EntraTokenSource(short, "scope/.default")
    assert [await source.token(), await source.token()] == ["token-1", "token-2"]


def test_missing_keys_are_config_errors() -> None:
    """A profile that needs a key and has none says which variable to set."""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_profile(ApiSettings(base_url="http://127.0.0.1:8080/v1"), None)
    with pytest.raises(ConfigError, match="AZURE_AI_API_KEY"):
        build_profile(ApiSettings(backend="azure", azure_auth="api_key", base_url=AZURE_URL), None)


def test_entra_is_the_azure_default_and_a_refused_key_points_at_it() -> None:
    """backend = "azure" authenticates with Entra ID unless told otherwise; a refused key says so."""
    assert ApiSettings(backend="azure").azure_auth == "entra"
    hint = auth_hint(ApiSettings(backend="azure", azure_auth="api_key"))
    assert "usually wants Microsoft Entra ID" in hint
    assert "Azure AI User" in auth_hint(ApiSettings(backend="azure"))
    assert "OPENAI_API_KEY" in auth_hint(ApiSettings())


def azure_identity_installed() -> bool:
    try:
        return importlib.util.find_spec("azure.identity") is not None
    except ModuleNotFoundError:  # no azure namespace package at all
        return False


@pytest.mark.skipif(azure_identity_installed(), reason="azure-identity is installed here")
def test_entra_without_azure_identity_says_how_to_install_it() -> None:
    """Entra ID auth (the azure default) without the [azure] extra names the extra, in one line."""
    with pytest.raises(ConfigError, match=r"pip install 'tool-worker\[azure\]'") as caught:
        build_profile(ApiSettings(backend="azure", base_url=AZURE_URL), None)
    assert "\n" not in str(caught.value)
    assert 'azure_auth = "api_key"' in str(caught.value)


def test_a_profile_without_base_url_names_the_choices() -> None:
    """Settings built in code without an address get the same choices as check-config."""
    with pytest.raises(ConfigError, match='backend = "agents"'):
        build_profile(ApiSettings(), Secret("sk-x"))

"""Configuring the agents backend: sessions and agents, what each backend takes, the webhook
secret kept out of the file, and the profile's headers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import make_settings
from worker.api.backends import AgentsProfile, build_profile
from worker.config.loading import load_config
from worker.config.secret import Secret
from worker.errors import ConfigError
from worker.rounds.scope import unknown_policy

if TYPE_CHECKING:
    from pathlib import Path

KEY = {"OPENAI_API_KEY": "sk-test-1234567890"}
SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(text)
    return path


def test_sessions_and_agents_are_read_and_checked(tmp_path: Path) -> None:
    """Ids are checked as threads' are; the default base_url is OpenAI's."""
    settings = load_config(write(tmp_path, '[api]\nbackend = "agents"\n[watch]\n'
                                 'sessions = ["sess_1"]\nagents = ["agent_1"]\ndiscover = true\n'),
                           environ=KEY)
    assert settings.watch.sessions == ("sess_1",)
    assert settings.watch.agents == ("agent_1",)
    assert settings.api.base_url == "https://api.openai.com/v1"
    with pytest.raises(ConfigError, match=r"watch\.sessions\[0\]"):
        load_config(write(tmp_path, '[api]\nbackend = "agents"\n[watch]\n'
                          'sessions = ["../x"]\n'), environ=KEY)


@pytest.mark.parametrize(("backend", "key"), [("openai", "sessions"), ("agents", "threads")])
def test_sessions_need_the_agents_backend_and_threads_another(
    tmp_path: Path, backend: str, key: str,
) -> None:
    """A session id under a threads backend (or the reverse) is a config error naming the key."""
    text = f'[api]\nbackend = "{backend}"\n[watch]\n{key} = ["x_1"]\n'
    with pytest.raises(ConfigError, match=f"watch.{key}"):
        load_config(write(tmp_path, text), environ=KEY)


def test_the_webhook_secret_comes_from_the_environment_or_a_file_never_the_file(
    tmp_path: Path,
) -> None:
    """Environment or webhook_secret_file; written in the TOML it is refused, saying where."""
    agents = {**KEY, "TOOL_WORKER__API__BACKEND": "agents"}
    settings = load_config(environ={**agents, "TOOL_WORKER__SERVER__WEBHOOK_SECRET": SECRET})
    assert settings.server.webhook_secret is not None
    assert settings.server.webhook_secret.get() == SECRET
    assert SECRET in settings.secret_values()
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    from_file = load_config(write(tmp_path, f'[server]\nwebhook_secret_file = "{secret_file}"\n'),
                            environ=agents)
    assert from_file.server.webhook_secret is not None
    assert from_file.server.webhook_secret.get() == SECRET
    with pytest.raises(ConfigError, match="TOOL_WORKER__SERVER__WEBHOOK_SECRET"):
        load_config(write(tmp_path, f'[server]\nwebhook_secret = "{SECRET}"\n'), environ=agents)


async def test_the_agents_profile_sends_the_agents_beta_header() -> None:
    """Bearer key and OpenAI-Beta: agents=v1, not assistants=v2."""
    settings = make_settings(api={"backend": "agents"})
    profile = build_profile(settings.api, Secret("sk-agents-0123456789"))
    assert isinstance(profile, AgentsProfile)
    headers = await profile.headers()
    assert headers["Authorization"] == "Bearer sk-agents-0123456789"
    assert headers["OpenAI-Beta"] == "agents=v1"


def test_discovering_named_agents_answers_unknown_tools_with_an_error() -> None:
    """Discovery of every session leaves unknown tools to others; of named agents it does not."""
    every = make_settings(api={"backend": "agents"}, watch={"discover": True})
    named = make_settings(api={"backend": "agents"},
                          watch={"discover": True, "agents": ["agent_1"]})
    assert unknown_policy(every) == "leave"
    assert unknown_policy(named) == "error"

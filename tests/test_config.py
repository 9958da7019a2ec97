"""The configuration: TOML, environment overrides, the API key, and errors that name the key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from worker.config import Secret, load_config
from worker.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

KEY = {"OPENAI_API_KEY": "sk-test-1234567890"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(text)
    return path


def test_defaults_need_only_a_key() -> None:
    """With no file, the defaults hold and the key comes from OPENAI_API_KEY."""
    settings = load_config(environ=KEY)
    assert settings.api.base_url == "https://api.openai.com/v1"
    assert settings.tools.modules == ("tools.builtin",)
    assert settings.server.port == 9464
    assert settings.api_key is not None
    assert settings.api_key.get() == "sk-test-1234567890"


def test_file_values_are_read(tmp_path: Path) -> None:
    """Every section of the file reaches the settings."""
    path = write(tmp_path, """
[api]
base_url = "http://127.0.0.1:8080/v1"
[watch]
threads = ["thread_a", "thread_b"]
[tools]
modules = ["tools.builtin", "mypkg.tools"]
[server]
port = 9000
""")
    settings = load_config(path, environ=KEY)
    assert settings.api.base_url == "http://127.0.0.1:8080/v1"
    assert settings.watch.threads == ("thread_a", "thread_b")
    assert settings.tools.modules == ("tools.builtin", "mypkg.tools")
    assert settings.server.port == 9000


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """TOOL_WORKER__SECTION__KEY wins over the file and keeps TOML types."""
    path = write(tmp_path, '[watch]\nthreads = ["thread_file"]\n')
    env = {**KEY, "TOOL_WORKER__WATCH__THREADS": '["thread_env"]',
           "TOOL_WORKER__SERVER__PORT": "9999", "TOOL_WORKER__API__BASE_URL": "http://x/v1"}
    settings = load_config(path, environ=env)
    assert settings.watch.threads == ("thread_env",)
    assert settings.server.port == 9999
    assert settings.api.base_url == "http://x/v1"


def test_key_from_a_secret_file(tmp_path: Path) -> None:
    """[api] api_key_file is read, stripped, and preferred over the environment."""
    secret = tmp_path / "key"
    secret.write_text("sk-from-file\n")
    path = write(tmp_path, f'[api]\napi_key_file = "{secret}"\n')
    settings = load_config(path, environ=KEY)
    assert settings.api_key is not None
    assert settings.api_key.get() == "sk-from-file"


def test_missing_key_is_a_clear_error() -> None:
    """Without a key the error says where a key can come from."""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        load_config(environ={})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[api]\nbase_urll = 'x'\n", r"api\.base_urll: unknown key"),
        ("[server]\nport = 'high'\n", r"server\.port: .*integer"),
        ("[tools]\ndefault_timeout_s = -1\n", r"tools\.default_timeout_s: .*greater than 0"),
        ("[logging]\nformat = 'xml'\n", r"logging\.format"),
        ("[nope]\nx = 1\n", r"nope: unknown key"),
        ("not toml = = 1", "not valid TOML"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    """A bad file gives one line naming the file and the key, never a traceback."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(path, environ=KEY)
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A config path that does not exist is reported as such."""
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml", environ=KEY)


def test_malformed_env_override_is_reported() -> None:
    """An override without SECTION__KEY is rejected with the expected shape."""
    with pytest.raises(ConfigError, match="TOOL_WORKER__SECTION__KEY"):
        load_config(environ={**KEY, "TOOL_WORKER__PORT": "1"})


def test_the_key_never_prints() -> None:
    """repr, str and the settings' repr hide the key."""
    settings = load_config(environ=KEY)
    assert "sk-test" not in repr(settings)
    assert "sk-test" not in str(settings)
    assert repr(Secret("sk-abc")) == "Secret('***')"
    assert str(Secret("sk-abc")) == "***"


def test_the_example_documents_every_key() -> None:
    """config.example.toml loads as is and names every key of every section."""
    import tomllib
    from pathlib import Path

    from worker.config import Settings

    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    settings = load_config(example, environ=KEY)
    assert settings.model_dump() == load_config(environ=KEY).model_dump()  # shows the defaults
    text = example.read_text()
    parsed = tomllib.loads(text)
    for section, field in Settings.model_fields.items():
        if section == "api_key":
            continue
        assert f"[{section}]" in text
        for key in field.annotation.model_fields:  # type: ignore[union-attr]
            assert key in parsed.get(section, {}) or f"# {key} = " in text, f"{section}.{key}"

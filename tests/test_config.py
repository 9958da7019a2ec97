"""The configuration: TOML, environment overrides, the API key, and errors that name the key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from worker.config.loading import load_config
from worker.config.secret import Secret
from worker.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

KEY = {"OPENAI_API_KEY": "sk-test-1234567890"}
SIM_URL = "http://127.0.0.1:8080/v1"
# A key and a server: what a config needs beyond the defaults to talk to an API.
ENV = {**KEY, "TOOL_WORKER__API__BASE_URL": SIM_URL}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(text)
    return path


def test_defaults_need_a_key_and_a_server() -> None:
    """With no file, the defaults hold and the key comes from OPENAI_API_KEY."""
    settings = load_config(environ=ENV)
    assert settings.api.base_url == SIM_URL
    assert settings.tools.modules == ("tool_worker_tools.builtin",)
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
modules = ["tool_worker_tools.builtin", "mypkg.tools"]
[server]
port = 9000
""")
    settings = load_config(path, environ=KEY)
    assert settings.api.base_url == "http://127.0.0.1:8080/v1"
    assert settings.watch.threads == ("thread_a", "thread_b")
    assert settings.tools.modules == ("tool_worker_tools.builtin", "mypkg.tools")
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
    settings = load_config(path, environ=ENV)
    assert settings.api_key is not None
    assert settings.api_key.get() == "sk-from-file"


@pytest.mark.parametrize(("backend", "says"), [
    ("openai", ['backend = "agents"', 'backend = "azure"', "compatible", "tool-worker simulate"]),
    ("azure", ["project endpoint", "services.ai.azure.com"]),
])
def test_no_base_url_names_the_choices(tmp_path: Path, backend: str, says: list[str]) -> None:
    """OpenAI's Assistants API is retired, so there is no default address: the error says what to use."""
    path = write(tmp_path, f'[api]\nbackend = "{backend}"\nazure_auth = "api_key"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=KEY)
    assert str(caught.value).startswith(f"{path}: api.base_url: no base_url")
    for words in says:
        assert words in str(caught.value)
    assert load_config(path, environ=KEY, require_api_key=False).api.base_url is None


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


@pytest.mark.parametrize(("index", "bad"), [(1, "../../../assistants"), (0, "a?b"), (1, "a&b")])
def test_watched_threads_are_checked_at_load(tmp_path: Path, index: int, bad: str) -> None:
    """A [watch] threads entry no API would issue is a ConfigError naming the entry and value."""
    threads = ["thread_ok", bad] if index else [bad, "thread_ok"]
    path = write(tmp_path, f"[watch]\nthreads = {threads!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match=rf"watch\.threads\[{index}\]: thread id") as info:
        load_config(path, environ=KEY)
    assert repr(bad) in str(info.value)
    assert str(path) in str(info.value)


def test_served_assistants_are_checked_at_load(tmp_path: Path) -> None:
    """A [watch] assistants entry no API would issue is a ConfigError naming the entry."""
    path = write(tmp_path, '[watch]\nassistants = ["asst_ok", "a/b"]\n')
    with pytest.raises(ConfigError, match=r"watch\.assistants\[1\]: assistant id"):
        load_config(path, environ=KEY)


@pytest.mark.parametrize("text", ["[api]\napi_key = 'sk-inline-123456'\n",
                                  "api_key = 'sk-inline-123456'\n"])
def test_an_inline_key_says_where_keys_go(tmp_path: Path, text: str) -> None:
    """A key in the file is not an "unknown key": the error names the variables and the file key."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=KEY)
    message = str(info.value)
    assert "never read from the configuration" in message
    for where in ("OPENAI_API_KEY", "AZURE_AI_API_KEY", "api_key_file"):
        assert where in message
    assert "sk-inline" not in message


def test_an_inline_watch_token_says_where_it_goes(tmp_path: Path) -> None:
    """[server] watch_token in the file points at the environment variable or a token file."""
    path = write(tmp_path, "[server]\nwatch_token = 'tok-inline-123456'\n")
    with pytest.raises(ConfigError, match=r"server\.watch_token: .*TOOL_WORKER__SERVER__WATCH_TOKEN"
                       r".*watch_token_file") as info:
        load_config(path, environ=KEY)
    assert "tok-inline" not in str(info.value)


def test_the_watch_token_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    """The token is read verbatim from the environment (digits stay a string) or from a file."""
    from_env = load_config(environ={**ENV, "TOOL_WORKER__SERVER__WATCH_TOKEN": "0123456789012345"})
    assert from_env.server.watch_token is not None
    assert from_env.server.watch_token.get() == "0123456789012345"
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file-0123\n")
    path = write(tmp_path, f"[server]\nwatch_token_file = '{token_file}'\n")
    from_file = load_config(path, environ=ENV)
    assert from_file.server.watch_token is not None
    assert from_file.server.watch_token.get() == "tok-from-file-0123"
    assert "tok-from-file-0123" not in repr(from_file)
    assert from_file.model_dump()["server"]["watch_token"] == "***"


def test_secret_values_lists_what_logs_must_hide() -> None:
    """The key, the watch token and Redis passwords are the literals handed to the logs."""
    settings = load_config(environ={
        **ENV, "TOOL_WORKER__SERVER__WATCH_TOKEN": "tok-0123456789abc",
        "TOOL_WORKER__COORDINATION__REDIS_URL": "redis://:redis-pass-1@db:6379/0",
        "TOOL_WORKER__INTAKE__REDIS_URL": "redis://user:other-pass-2@db:6379/1",
    })
    assert settings.secret_values() == (
        "other-pass-2", "redis-pass-1", "sk-test-1234567890", "tok-0123456789abc")


@pytest.mark.parametrize("token", ["Q", "0123456789abcde", "0123456789 abcdef", "token\twith-tab-01"])
def test_a_short_or_spaced_watch_token_is_a_config_error(token: str) -> None:
    """Issue #25: a one-character token was accepted; the throttle alone does not stop guesses.
    The message never quotes the token."""
    with pytest.raises(ConfigError, match=r"(?i)watch.token") as caught:
        load_config(environ={**KEY, "TOOL_WORKER__SERVER__WATCH_TOKEN": token})
    assert token not in str(caught.value)
    assert "TOOL_WORKER__SERVER__WATCH_TOKEN" in str(caught.value)


def test_the_key_never_prints() -> None:
    """repr, str and the settings' repr hide the key."""
    settings = load_config(environ=ENV)
    assert "sk-test" not in repr(settings)
    assert "sk-test" not in str(settings)
    assert repr(Secret("sk-abc")) == "Secret('***')"
    assert str(Secret("sk-abc")) == "***"


def test_the_example_documents_every_key() -> None:
    """config.example.toml loads as is and names every key of every section."""
    import tomllib
    from pathlib import Path

    from worker.config.settings import Settings

    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    settings = load_config(example, environ=KEY)
    # It shows the defaults, and the simulator's address where base_url has none.
    assert settings.model_dump() == load_config(environ=ENV).model_dump()
    text = example.read_text()
    parsed = tomllib.loads(text)
    for section, field in Settings.model_fields.items():
        if section == "api_key":
            continue
        assert f"[{section}]" in text
        for key in field.annotation.model_fields:  # type: ignore[union-attr]
            if (section, key) in (("server", "watch_token"), ("server", "webhook_secret")):
                assert f"TOOL_WORKER__SERVER__{key.upper()}" in text  # refused in a file
                continue
            assert key in parsed.get(section, {}) or f"# {key} = " in text, f"{section}.{key}"


def test_streams_and_connections_are_sized_apart(tmp_path):
    """Streams have their own pool: lowering max_connections alone loads, streams untouched."""
    path = tmp_path / "worker.toml"
    path.write_text("[api]\nmax_connections = 8\nmax_streams = 32\n")
    settings = load_config(path, environ={**ENV, "OPENAI_API_KEY": "sk-x"})
    assert (settings.api.max_connections, settings.api.max_streams) == (8, 32)


def test_a_bad_environment_variable_is_blamed_on_the_variable_not_the_file(tmp_path: Path) -> None:
    """TOOL_WORKER__WATCH__THREAD (a typo) names the variable, and the key it meant."""
    path = write(tmp_path, "[watch]\nthreads = []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={**KEY, "TOOL_WORKER__WATCH__THREAD": '["thread_a"]'})
    message = str(info.value)
    assert message.startswith("TOOL_WORKER__WATCH__THREAD: watch.thread: unknown key")
    assert str(path) not in message
    assert "did you mean 'threads'?" in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[watch]\nthread = ['thread_a']\n", "watch.thread: unknown key (did you mean 'threads'?)"),
        ("[wach]\nthreads = []\n", "wach: unknown key (did you mean 'watch'?)"),
        ("[api]\nzzz = 1\n", "api.zzz: unknown key; `tool-worker check-config --example` prints"),
    ],
)
def test_an_unknown_key_suggests_the_nearest_and_the_example_command(
    tmp_path: Path, text: str, message: str,
) -> None:
    """A mistyped key gets a did-you-mean; the pointer is a command, not a file a wheel lacks."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=KEY)
    assert message in str(info.value)
    assert "config.example.toml" not in str(info.value)


def test_a_string_where_a_list_belongs_says_a_list(tmp_path: Path) -> None:
    """modules = "x" asks for a list (TOML has no tuples)."""
    with pytest.raises(ConfigError, match=r"tools\.modules: should be a list") as info:
        load_config(write(tmp_path, '[tools]\nmodules = "x"\n'), environ=KEY)
    assert "tuple" not in str(info.value)

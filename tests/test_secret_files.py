"""Secret files and values: read safely, refused clearly, warned about when others can read them.

Issue #25: ``/dev/zero`` as a key file ended in a MemoryError, a key with an inner newline
was an "unexpected error" at the first request, ``inf`` was accepted for every timeout, and no
warning said that a key file was world-readable or a symlink to elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.cli import main
from worker.config.loading import load_config
from worker.config.secret_files import MAX_SECRET_FILE_BYTES, secret_file_warnings
from worker.errors import ConfigError

KEY = "sk-secretfile-0123456789"
# The service a config must name (there is no default base_url).
SERVER = {"TOOL_WORKER__API__BASE_URL": "http://127.0.0.1:8080/v1"}


def key_file(tmp_path: Path, content: str | bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "api-key"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    path.chmod(mode)
    return path


def load_with_key_file(path: Path) -> object:
    return load_config(environ={**SERVER, "TOOL_WORKER__API__API_KEY_FILE": str(path)})


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null"])
def test_a_key_file_that_is_no_regular_file_is_refused(special: str) -> None:
    """/dev/zero would be read for ever: it is refused before a byte is read."""
    with pytest.raises(ConfigError, match="is not a regular file") as caught:
        load_with_key_file(Path(special))
    assert caught.value.key == "api.api_key_file"


def test_a_huge_key_file_is_refused_unread(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"over {MAX_SECRET_FILE_BYTES} bytes"):
        load_with_key_file(key_file(tmp_path, "k" * (MAX_SECRET_FILE_BYTES + 1)))


@pytest.mark.parametrize("content", [f"{KEY}\nsecond-line", f"{KEY} trailing-word",
                                     f"{KEY}\x00", "  \n "])
def test_a_key_file_must_hold_one_value(tmp_path: Path, content: str) -> None:
    """A line break or space inside is a config error naming the setting, not quoting it."""
    with pytest.raises(ConfigError) as caught:
        load_with_key_file(key_file(tmp_path, content))
    assert caught.value.key == "api.api_key_file"
    assert KEY not in str(caught.value)


def test_a_trailing_newline_is_fine(tmp_path: Path) -> None:
    settings = load_config(environ={**SERVER, "TOOL_WORKER__API__API_KEY_FILE": str(
        key_file(tmp_path, f"{KEY}\n"))})
    assert settings.api_key is not None
    assert settings.api_key.get() == KEY


@pytest.mark.parametrize(("name", "value"), [
    ("OPENAI_API_KEY", f"{KEY}\ninjected: header"),
    ("TOOL_WORKER__SERVER__WATCH_TOKEN", "watch-token\r\nX-Evil: 1"),
])
def test_an_inner_newline_in_an_environment_secret_is_a_config_error(
    name: str, value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exit 2 with one line naming the variable, not exit 1 with "unexpected error"."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv(name, value)
    assert main(["check-config", "--no-api"]) == 2
    err = capsys.readouterr().err
    assert name in err
    assert "unexpected" not in err
    assert "injected" not in err
    assert "X-Evil" not in err


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1", "0"])
@pytest.mark.parametrize("setting", ["API__REQUEST_TIMEOUT_S", "WATCH__POLL_TIMEOUT_S",
                                     "API__STREAM_MAX_S", "SHUTDOWN__DRAIN_TIMEOUT_S"])
def test_timeouts_are_finite_and_positive(setting: str, value: str) -> None:
    """inf would wait for ever, nan passes every comparison: both are config errors."""
    if setting == "SHUTDOWN__DRAIN_TIMEOUT_S" and value == "0":
        return  # 0 is a valid drain timeout: do not wait
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"OPENAI_API_KEY": KEY, f"TOOL_WORKER__{setting}": value})
    assert caught.value.key == setting.lower().replace("__", ".")


def test_a_world_readable_key_file_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """check-config says so (and the worker still starts: it is a warning)."""
    path = key_file(tmp_path, KEY, mode=0o644)
    monkeypatch.setenv("TOOL_WORKER__API__API_KEY_FILE", str(path))
    monkeypatch.setenv("TOOL_WORKER__API__BASE_URL", SERVER["TOOL_WORKER__API__BASE_URL"])
    assert main(["check-config", "--no-api"]) == 0
    out = capsys.readouterr().out
    assert f"warning: [api] api_key_file {path}: can be read by others" in out
    assert "chmod 600" in out


def test_a_private_key_file_has_no_warning(tmp_path: Path) -> None:
    path = key_file(tmp_path, KEY)
    settings = load_config(environ={**SERVER, "TOOL_WORKER__API__API_KEY_FILE": str(path)})
    assert secret_file_warnings(settings) == []


def test_a_symlink_out_of_its_directory_is_warned_about(tmp_path: Path) -> None:
    """A link to elsewhere is followed, and said; a link within the directory (a mounted
    Kubernetes Secret's ..data) is not."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = key_file(elsewhere, KEY)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api-key").symlink_to(target)
    settings = load_config(environ={**SERVER, "TOOL_WORKER__API__API_KEY_FILE": str(secrets / "api-key")})
    [warning] = secret_file_warnings(settings)
    assert f"is a symlink to {target}, outside its directory" in warning
    data = secrets / "..data"
    data.mkdir()
    os.replace(target, data / "api-key")
    (secrets / "api-key").unlink()
    (secrets / "api-key").symlink_to("..data/api-key")
    assert secret_file_warnings(settings) == []

"""Redis URLs: a password with any character works as written, and is never printed.

Issue #25: a password with an unencoded ``#``, ``?`` or ``/`` crashed start-up printing it,
while ``check-config`` said OK. Here a real redis-server requires such a password.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.redis_server import RedisServer, free_port
from worker.cli import main
from worker.config.loading import load_config
from worker.config.redis_url import parse_redis_url
from worker.errors import ConfigError
from worker.service.redis_connection import connect_redis

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Every character urllib reads as the end of the password, the host or the path.
PASSWORD = "p#ss?w/rd@x:y%zz"
KEY_ENV = {"OPENAI_API_KEY": "sk-test-redis-0123456789"}


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-pass"), password=PASSWORD)
    server.start()
    yield server
    server.stop()


def url_with(server: RedisServer, password: str) -> str:
    return f"redis://:{password}@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize(("url", "address", "username", "password"), [
    ("redis://:p#s?w/o@rd@cache:6379/0", "redis://cache:6379/0", None, "p#s?w/o@rd"),
    ("redis://user:pa%23ss@h:1/2", "redis://h:1/2", "user", "pa#ss"),
    ("rediss://:x@h", "rediss://h", None, "x"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", None, None),
    ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1", None, None),
])
def test_the_user_part_ends_at_the_last_at_sign(
    url: str, address: str, username: str | None, password: str | None
) -> None:
    """What urllib would cut at #, ? or / stays in the password; %-escapes still work."""
    parsed = parse_redis_url(url, key="coordination.redis_url")
    assert (parsed.address, parsed.username) == (address, username)
    assert (parsed.password.get() if parsed.password else None) == password
    if password:
        assert password not in parsed.shown()


@pytest.mark.parametrize("url", [
    "redis://:s3cret#x@host:port/0", "redis://:s3cret#x@/0", "http://:s3cret#x@h/0",
    "redis://:s3cret#x@h/zero", "redis://:s3cret#x@h:1/0\n",
])
def test_a_bad_redis_url_is_a_config_error_without_the_password(url: str) -> None:
    """The error names the setting and shows the URL with *** for the password."""
    with pytest.raises(ConfigError) as caught:
        load_config(environ={**KEY_ENV, "TOOL_WORKER__COORDINATION__REDIS_URL": url})
    assert caught.value.key == "coordination.redis_url"
    assert "s3cret" not in str(caught.value)


async def test_a_password_with_special_characters_connects(locked_redis: RedisServer) -> None:
    """The password goes to redis-py as an argument, so Redis receives it whole."""
    client = connect_redis(url_with(locked_redis, PASSWORD))
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "w.toml"
    path.write_text('[api]\nbase_url = "http://127.0.0.1:8080/v1"\n'
                    f'[coordination]\nbackend = "redis"\nredis_url = {json.dumps(url)}\n'
                    '[tools]\nmodules = ["tests.handlers.sample"]\n')
    return path


def test_check_config_pings_redis(
    locked_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """check-config connects and PINGs with the password as written; it never prints it."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY_ENV["OPENAI_API_KEY"])
    assert main(["check-config", "--no-api", "--config", str(write_config(
        tmp_path, url_with(locked_redis, PASSWORD)))]) == 0
    out, err = capsys.readouterr()
    assert f"redis://:***@127.0.0.1:{locked_redis.port}/0 answers PING" in out
    assert PASSWORD not in out + err


def test_check_config_refuses_a_wrong_password(
    locked_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A password Redis refuses is a configuration error (exit 2), printed as ***."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY_ENV["OPENAI_API_KEY"])
    wrong = "wrong#pass?word"
    code = main(["check-config", "--no-api", "--config", str(write_config(
        tmp_path, url_with(locked_redis, wrong)))])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "coordination.redis_url" in err
    assert "refuses the credentials" in err
    assert wrong not in out + err


def test_check_config_says_when_redis_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing listening: a clear line, and still exit 0 (the worker waits for Redis)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY_ENV["OPENAI_API_KEY"])
    port = free_port()
    assert main(["check-config", "--no-api", "--config", str(write_config(
        tmp_path, f"redis://:{PASSWORD}@127.0.0.1:{port}/0"))]) == 0
    out, err = capsys.readouterr()
    assert f"redis://:***@127.0.0.1:{port}/0 cannot be reached now" in out
    assert PASSWORD not in out + err

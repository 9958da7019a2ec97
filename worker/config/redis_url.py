"""Redis URLs, parsed so that a password may hold any character and is never printed.

``urllib.parse`` (and redis-py, which uses it) reads an unencoded ``#``, ``?`` or ``/`` in
the password as the start of the fragment, query or path, and an ``@`` as the end of the
user part: the password is cut, the host is wrong, and the error quotes the URL. Here the
user part ends at the *last* ``@`` and the password is everything after the first ``:`` of
it, so ``redis://:p#s?w/o@rd@cache:6379/0`` works as written (percent-encoding still works);
the password becomes a ``Secret``; errors show the URL with the password as ``***``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from worker.config.secret import Secret
from worker.errors import ConfigError

__all__ = ["RedisUrl", "parse_redis_url"]

_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A Redis URL split into the address redis-py may see and the credentials it must not."""

    address: str  # the URL without the user part: safe to print and to hand to redis-py
    username: str | None
    password: Secret | None

    def shown(self) -> str:
        """The URL as an operator may read it: the password as ``***``."""
        if self.username is None and self.password is None:
            return self.address
        scheme, _, rest = self.address.partition("://")
        secret = ":***" if self.password is not None else ""
        return f"{scheme}://{self.username or ''}{secret}@{rest}"


def parse_redis_url(url: str, *, key: str) -> RedisUrl:
    """``url`` as a ``RedisUrl``.

    Raises:
        ConfigError: naming ``key``; the message never holds the password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigError("is not a Redis URL: use redis://[[user]:password@]host[:port][/db] "
                          "(or rediss:// for TLS, unix:///path)", key=key)
    username = password = None
    if "@" in rest:
        user_part, rest = rest.rsplit("@", 1)
        user, colon, secret = user_part.partition(":")
        username = unquote(user) or None
        password = Secret(unquote(secret)) if colon and secret else None
    address = f"{scheme}://{rest}"
    parsed = RedisUrl(address, username, password)
    if not url.isprintable():
        raise ConfigError(f"{parsed.shown()!r} holds control characters (a newline?)", key=key)
    try:
        split = urlsplit(address)
        split.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"{parsed.shown()!r} is not a valid Redis URL: {exc}", key=key) from None
    if scheme.lower() == "unix":
        return parsed
    if not split.hostname:
        raise ConfigError(f"{parsed.shown()!r} names no host", key=key)
    db = split.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(f"{parsed.shown()!r}: the database after the host must be a number, "
                          "like /0", key=key)
    return parsed

"""Files that hold one secret (the API key, the watch token, the webhook secret): read safely.

A secret file is read only when it is a regular file (``/dev/zero`` or a FIFO would never
end) and at most ``MAX_SECRET_FILE_BYTES`` of it; its value must be one token, with no
whitespace or control character inside (a key with an inner newline would break the header
it is sent in). ``secret_file_warnings`` says when a file can be read by everyone or by a
group the worker is not in, or is a symlink that points out of its directory: the worker
still starts, but ``run`` logs it and ``check-config`` prints it.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from worker.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from worker.config.settings import Settings

__all__ = ["MAX_SECRET_FILE_BYTES", "check_secret_value", "read_secret_file",
           "secret_file_warnings"]

# A key, a token or a secret is a few hundred bytes; an Entra-style token a few KiB.
MAX_SECRET_FILE_BYTES = 64 * 1024


def check_secret_value(value: str, *, what: str, key: str, source: str | None = None) -> str:
    """``value`` stripped; a ConfigError (never quoting it) when it is empty or not one token.

    Raises:
        ConfigError: naming ``key`` (the setting, or the variable it came from).
    """
    value = value.strip()
    if not value:
        raise ConfigError(f"{what} is empty", source=source, key=key)
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigError(f"{what} holds a line break, a space or a control character inside; "
                          "it must be one line holding only the value", source=source, key=key)
    return value


def read_secret_file(path: Path, *, what: str, key: str, source: str | None = None) -> str:
    """The secret in ``path``, checked as ``check_secret_value`` does.

    Raises:
        ConfigError: the file cannot be read, is not a regular file, is too large, or does
            not hold one value.
    """
    try:
        with path.open("rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ConfigError(f"{path} is not a regular file; point it at a file that "
                                  f"holds only {what}", source=source, key=key)
            raw = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", source=source, key=key) from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{path} is over {MAX_SECRET_FILE_BYTES} bytes; it must hold only "
                          f"{what}", source=source, key=key)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", source=source, key=key) from None
    return check_secret_value(text, what=f"{what} in {path}", key=key, source=source)


def secret_file_warnings(settings: Settings) -> list[str]:
    """What is unsafe about the secret files configured, one line each (never their values)."""
    warnings: list[str] = []
    for key, path in (("api.api_key_file", settings.api.api_key_file),
                      ("server.watch_token_file", settings.server.watch_token_file),
                      ("server.webhook_secret_file", settings.server.webhook_secret_file)):
        if path is not None:
            warnings.extend(f"[{key.replace('.', '] ', 1)} {path}: {problem}"
                            for problem in _problems(path))
    return warnings


def _problems(path: Path) -> list[str]:
    problems: list[str] = []
    try:
        info = path.stat()
        target = path.resolve()
    except OSError:
        return problems  # loading said it cannot be read
    if path.is_symlink() and not target.is_relative_to(path.parent.resolve()):
        # A mounted Kubernetes Secret is key -> ..data/key -> ..<date>/key, all inside the
        # mount: fine. A link elsewhere may be changed by whoever owns that place.
        problems.append(f"is a symlink to {target}, outside its directory; point the setting "
                        "at the file itself")
    # Group access by one of our own groups is how Kubernetes hands a Secret to the pod
    # (fsGroup, defaultMode 0440); any other group, or everyone, should not read a key.
    group_foreign = info.st_mode & stat.S_IRWXG and info.st_gid not in _own_groups()
    if info.st_mode & stat.S_IRWXO or group_foreign:
        problems.append(f"can be read by others (mode {stat.filemode(info.st_mode)}); "
                        f"chmod 600 {path}")
    return problems


def _own_groups() -> set[int]:
    return {os.getgid(), os.getegid(), *os.getgroups()}

"""Where passwords come from: a file, an environment variable, or a no-echo prompt.

Never from a plain command-line value: argv is visible to every user of
the machine through ps(1) and /proc.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from smimecli.errors import AuthError, InputError, UsageError

T = TypeVar("T")


def read_password(
    *,
    password_file: str | os.PathLike[str] | None = None,
    password_env: str | None = None,
    prompt: str | None = None,
) -> bytes | None:
    """Return the password as bytes, or None when no source was given.

    Args:
        password_file: a file whose content is the password; one trailing newline is ignored.
        password_env: the name of an environment variable holding the password.
        prompt: when neither is given and standard input is a terminal, ask without echo.
    """
    if password_file is not None and password_env is not None:
        raise UsageError("give either --password-file or --password-env, not both")
    if password_file is not None:
        try:
            with open(password_file, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise InputError(
                f"cannot read password file {password_file}: {exc.strerror or exc}"
            ) from exc
        if data.endswith(b"\r\n"):
            return data[:-2]
        if data.endswith(b"\n"):
            return data[:-1]
        return data
    if password_env is not None:
        value = os.environ.get(password_env)
        if value is None:
            raise UsageError(f"environment variable {password_env} is not set")
        return value.encode("utf-8")
    if prompt is not None and sys.stdin is not None and sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt).encode("utf-8")
    return None


def load_with_password(load: Callable[[bytes | None], T], password: bytes | None, what: str) -> T:
    """``load(password)``; when that needs a password and no source gave one, ask for it
    on a terminal (no echo) and try once more.

    Args:
        load: opens the file with a password (None for none); raises AuthError when it
            needs another one.
        password: what --password-file / --password-env gave, or None.
        what: the file, for the prompt.
    """
    try:
        return load(password)
    except AuthError:
        if password is not None:
            raise
        prompted = read_password(prompt=f"Password for {what}: ")
        if prompted is None:
            raise
        return load(prompted)

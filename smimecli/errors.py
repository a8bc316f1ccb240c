"""The one error family of smimecli.

Every failure a user can meet is a :class:`SmimeError` subclass that carries a message a
user can act on and its sysexits(3) status, so Postfix and cron read the
outcome from the exit code. The CLI converts them to one stderr line in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum


class ExitStatus(IntEnum):
    """sysexits.h codes used by smimecli."""

    OK = 0
    USAGE = 64  # EX_USAGE: bad options
    DATAERR = 65  # EX_DATAERR: input is not a usable message, certificate, key or CMS
    NOINPUT = 66  # EX_NOINPUT: input file missing or unreadable
    NOUSER = 67  # EX_NOUSER: a recipient must be encrypted to but has no certificate
    SOFTWARE = 70  # EX_SOFTWARE: internal error (a bug)
    CANTCREAT = 73  # EX_CANTCREAT: output cannot be written
    IOERR = 74  # EX_IOERR: I/O error while reading or writing
    TEMPFAIL = 75  # EX_TEMPFAIL: temporary failure, retry later
    NOPERM = 77  # EX_NOPERM: wrong password, or no private key for any recipient
    CONFIG = 78  # EX_CONFIG: configuration error (rules file, store)


class SmimeError(Exception):
    """Base of every error smimecli reports to a user.

    Args:
        message: one line saying what failed, on which file, and what to do.
    """

    status: ExitStatus = ExitStatus.SOFTWARE

    def __init__(self, message: str) -> None:
        # One line on stderr, always: a library's multi-line detail is folded into it.
        message = "; ".join(part.strip() for part in message.splitlines() if part.strip())
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(SmimeError):
    """Bad options or arguments."""

    status = ExitStatus.USAGE


class DataError(SmimeError):
    """The input is not a usable message, certificate, key or CMS structure."""

    status = ExitStatus.DATAERR


class InputError(SmimeError):
    """An input file is missing or unreadable."""

    status = ExitStatus.NOINPUT


class RejectError(SmimeError):
    """A recipient must be encrypted to (``reject`` policy) but has no usable certificate."""

    status = ExitStatus.NOUSER


class OutputError(SmimeError):
    """The output cannot be created (folder missing, no permission)."""

    status = ExitStatus.CANTCREAT


class IOFailedError(SmimeError):
    """An I/O error while reading or writing (disk full, device error)."""

    status = ExitStatus.IOERR


class TempFailError(SmimeError):
    """A temporary failure: the caller should retry (``tempfail`` policy, store locked)."""

    status = ExitStatus.TEMPFAIL


class AuthError(SmimeError):
    """Wrong password, or no private key for any recipient of the message."""

    status = ExitStatus.NOPERM


class ConfigError(SmimeError):
    """A configuration error: rules file or store."""

    status = ExitStatus.CONFIG


def several(errors: Sequence[SmimeError]) -> SmimeError:
    """One error reporting several problems of one input (a rules file), one per line.

    The first error's class (and so its exit status) stands for all; a single error is
    returned as it is.
    """
    if len(errors) == 1:
        return errors[0]
    combined = type(errors[0])(errors[0].message)
    combined.message = "\n".join(error.message for error in errors)
    combined.args = (combined.message,)
    return combined

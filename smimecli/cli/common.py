"""Options and helpers shared by every command, defined once.

Commands import the library inside their bodies (STYLE principle 6): this module and the
command modules may import only typer and the light parts of smimecli at module level.
"""

from __future__ import annotations

import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smimecli.text import printable

if TYPE_CHECKING:
    from collections.abc import Iterable

    from smimecli.certs.store import Store
    from smimecli.notices import Notice

# --- shared option types -------------------------------------------------------------------

PasswordFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="Read the password from this file (one trailing newline is ignored).",
        metavar="FILE",
    ),
]
PasswordEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        help="Read the password from this environment variable.",
        metavar="NAME",
    ),
]
StorePasswordEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--store-password-env",
        help="Environment variable holding the store passphrase that encrypts private "
        "keys in the store [default: SMIMECLI_STORE_PASSWORD].",
        metavar="NAME",
    ),
]
PfxEncryptionOpt = Annotated[
    str,
    typer.Option(
        "--pfx-encryption",
        help="modern = AES-256/PBKDF2/SHA-256 MAC; legacy = 3DES/SHA-1 MAC "
        "(old Windows, macOS, gpgsm 2.2).",
        metavar="modern|legacy",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "-o", "--output", help="Write to this file instead of standard output.", metavar="OUTPUT"
    ),
]


@dataclass
class State:
    """Global options, set by the root callback."""

    store: Path | None = None
    verbose: bool = False
    quiet: bool = False
    # The root's --store-password-env: the store passphrase, passed to every store opened.
    store_passphrase: bytes | None = None

    def store_dir(self) -> Path:
        """The store folder: --store, else :func:`smimecli.certs.store.default_store_dir`."""
        if self.store is not None:
            return self.store
        from smimecli.certs.store import default_store_dir

        return default_store_dir()


STATE = State()


def state() -> State:
    """The global options of the running command."""
    return STATE


def open_store(
    store_password_env: str | None = None, *, create: bool = False, readonly: bool = False
) -> Store:
    """The store of --store; a command's own --store-password-env gives the passphrase,
    else the root's (an unset variable is a usage error; without either the store reads
    SMIMECLI_STORE_PASSWORD).
    Only commands that add certificates pass ``create``; commands that only read pass
    ``readonly`` (a missing store is 78 either way)."""
    from smimecli.certs.store import Store
    from smimecli.passwords import read_password

    passphrase = read_password(password_env=store_password_env)
    if passphrase is None:
        passphrase = STATE.store_passphrase
    return Store.open(STATE.store_dir(), create=create, readonly=readonly, passphrase=passphrase)


def check_pfx_encryption(pfx_encryption: str) -> None:
    """Refuse (64) a --pfx-encryption the .pfx writer does not know."""
    from smimecli.certs.pfx import ENCRYPTIONS

    if pfx_encryption not in ENCRYPTIONS:
        from smimecli.errors import UsageError

        raise UsageError(
            f"unknown --pfx-encryption {pfx_encryption!r}: use {' or '.join(ENCRYPTIONS)}"
        )


def is_std(path: Path | None) -> bool:
    """Whether a file argument means standard input/output (none, or ``-``)."""
    return path is None or str(path) == "-"


def input_name(path: Path | None) -> str:
    """How messages name an input file: its path, or ``standard input``."""
    return "standard input" if is_std(path) else str(path)


# --- output ---------------------------------------------------------------------------------


class _StderrHandler(logging.Handler):
    """Prints library warnings as ``smimecli: warning: ...`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "warning" if record.levelno >= logging.WARNING else "info"
        try:
            print(f"smimecli: {level}: {printable(record.getMessage())}", file=sys.stderr)
        except (BrokenPipeError, ValueError):
            pass


def configure_logging(*, verbose: bool, quiet: bool) -> None:
    """Route the library's ``smimecli`` logger to stderr (warnings; info with --verbose)."""
    logger = logging.getLogger("smimecli")
    for handler in list(logger.handlers):
        if isinstance(handler, _StderrHandler):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    logger.addHandler(handler)
    logger.propagate = False
    if quiet:
        logger.setLevel(logging.ERROR)
    elif verbose:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.WARNING)


_STD: dict[int, Any] = {}


def _real_fd(stream: Any, fd: int) -> bool:
    """Whether ``stream`` (a text stream) is the process's own file descriptor ``fd``."""
    try:
        binary = stream.buffer
        raw = getattr(binary, "raw", binary)  # FileIO itself under PYTHONUNBUFFERED
        return isinstance(raw, io.FileIO) and stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


def stdout_binary() -> Any:
    """The binary standard output; its write errors (full device, broken pipe) are 74."""
    if not _real_fd(sys.stdout, 1):
        return sys.stdout.buffer  # captured (tests)
    if 1 not in _STD:
        from smimecli.files import MappedWriter

        sys.stdout.flush()
        _STD[1] = MappedWriter(io.FileIO(1, "wb", closefd=False))
    return _STD[1]


def flush_stdout() -> None:
    """Flush what :func:`stdout_binary` holds (before a fast exit)."""
    if 1 in _STD:
        _STD[1].flush()


def stdin_binary() -> Any:
    """The binary standard input; its read errors are 66 (closed) or 74 (device error)."""
    if not _real_fd(sys.stdin, 0):
        return sys.stdin.buffer
    if 0 not in _STD:
        from smimecli.files import reader

        _STD[0] = reader(io.FileIO(0, "rb", closefd=False), "standard input")
    return _STD[0]


def _utf8(text: str) -> str:
    """JSON text that stays UTF-8: a lone surrogate (the undecodable bytes of a file name,
    ``bad\\xff.eml``) becomes the JSON escape ``\\udcff``, which ``os.fsencode`` of the
    decoded string turns back into the name's bytes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def emit_json(document: Any) -> None:
    """Print one JSON document on standard output."""
    import json

    text = json.dumps(document, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(_utf8(text) + "\n")


def emit_json_line(record: Any) -> None:
    """Print one JSON object on one line (streams of records)."""
    import json

    sys.stdout.write(_utf8(json.dumps(record, ensure_ascii=False, default=str)) + "\n")
    sys.stdout.flush()


def show_notices(notices: Iterable[Notice]) -> None:
    """Library notices as ``smimecli: warning: ...`` lines on stderr, unless --quiet."""
    for notice in notices:
        warn(notice)


def info(message: str) -> None:
    """A progress or result line on stderr, unless --quiet."""
    if not STATE.quiet:
        print(printable(message), file=sys.stderr)


def warn(message: object) -> None:
    """One ``smimecli: warning: ...`` line on stderr, unless --quiet: how the commands show
    the library's notices (:class:`smimecli.notices.Notice`) and their own warnings."""
    if STATE.quiet:
        return
    try:
        print(f"smimecli: warning: {printable(str(message))}", file=sys.stderr)
    except (BrokenPipeError, ValueError):
        pass


def write_output(
    data: bytes, output: Path | None, *, mode: int | None = None, private: bool = False
) -> None:
    """Write bytes to ``-o OUTPUT`` atomically, or to standard output (``private``: a
    plaintext, a new file is 0600)."""
    if output is None or is_std(output):
        out = stdout_binary()
        out.write(data)
        out.flush()
        return
    from smimecli.files import write_atomic

    write_atomic(output, data, mode=mode, private=private)


def console(*, stderr: bool = False) -> Any:
    """A rich Console on the current stdout/stderr, created on demand (not at import)."""
    from rich.console import Console

    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=False)

"""The root command: global options, command registration, and the one place where
errors become exit statuses (STYLE principle 2).

No ``from __future__ import annotations`` here: Typer would have to evaluate every
annotation string again on each run (about 10 ms of a gateway's per-message start-up).
"""

import errno
import importlib
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer

from smimecli import __version__
from smimecli.cli import coercion
from smimecli.cli.common import STATE, StorePasswordEnvOpt, configure_logging, flush_stdout
from smimecli.errors import ExitStatus, SmimeError
from smimecli.text import printable


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="smimecli",
        help="S/MIME encryption for mail servers and batch jobs.",
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
        # Plain Click help: brackets in help texts stay literal, paragraphs are re-wrapped
        # to the terminal, and --help does not import rich.
        rich_markup_mode=None,
    )


def _version_callback(value: bool) -> None:
    if value:
        print(f"smimecli {__version__}")
        raise typer.Exit(0)


def root(
    *,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            envvar="SMIMECLI_STORE",
            help="Certificate store folder [default: $XDG_DATA_HOME/smimecli].",
            metavar="DIR",
        ),
    ] = None,
    store_password_env: StorePasswordEnvOpt = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="More detail; tracebacks on errors.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """S/MIME encryption for mail servers and batch jobs.

    Encrypt mail by recipient rules, keep a certificate store, build lab certificates.
    Exit statuses follow sysexits(3): 64 usage, 65 bad input data, 66 missing input,
    67 recipient without certificate (reject), 73 cannot create output, 74 I/O error,
    75 temporary failure, 77 wrong password or no key, 78 configuration error, 70 bug.
    """
    if store_password_env is not None:
        from smimecli.passwords import read_password

        # Passed to every store the command opens (never through the environment).
        STATE.store_passphrase = read_password(password_env=store_password_env) or b""
    STATE.store = store
    STATE.verbose = verbose
    STATE.quiet = quiet
    configure_logging(verbose=verbose, quiet=quiet)


# Top-level commands in --help order: name -> (module in smimecli.cli, attribute); a Typer
# attribute is a command group, a function a command. A command's module is imported only
# when that command is built (STYLE principle 6).
_COMMANDS: dict[str, tuple[str, str]] = {
    "encrypt": ("encrypt", "encrypt"),
    "decrypt": ("decrypt", "decrypt"),
    "inspect": ("decrypt", "inspect"),
    "sign": ("sign", "sign"),
    "verify": ("verify", "verify"),
    "certs": ("certs", "app"),
    "gen-root": ("lab", "gen_root"),
    "gen-ca": ("lab", "gen_ca"),
    "issue-user": ("lab", "issue_user"),
    "gen-crl": ("lab", "gen_crl"),
    "rules": ("rules", "app"),
    "tnef": ("tnef", "app"),
    "serve": ("serve", "serve"),
    "demo": ("demo", "demo"),
}


def build_app(only: str | None = None) -> typer.Typer:
    """The root app with every command, or with the one top-level command ``only``."""
    new = _new_app()
    new.callback()(root)
    for name, (module_name, attribute) in _COMMANDS.items():
        if only is None or name == only:
            target = getattr(importlib.import_module(f"smimecli.cli.{module_name}"), attribute)
            if isinstance(target, typer.Typer):
                new.add_typer(target, name=name)
            else:
                new.command(name)(target)
    return new


def __getattr__(name: str) -> Any:
    # ``app``, the whole command tree, for tools/gen_docs.py and tests; built on first use.
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Global options that take a value: skipped when looking for the command name.
_VALUED_GLOBALS = {"--store", "--store-password-env"}


def _command_name(args: list[str]) -> str | None:
    """The top-level command the arguments run, or None (help, version, unknown)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUED_GLOBALS:
            skip = True
        elif arg in ("-h", "--help", "--version"):
            return None
        elif not arg.startswith("-"):
            return arg if arg in _COMMANDS else None
    return None


def _click_command(args: list[str]) -> Any:
    """Build the Click command for these arguments.

    Typer inspects the signature of every command function when it builds the tree; a
    gateway that runs ``smimecli encrypt`` per message needs only that one, so only the
    command being run is built (``--help`` and unknown names get the whole tree).
    """
    command = typer.main.get_command(build_app(_command_name(args)))
    coercion.install(command)
    return command


def _takes_value(param: Any) -> bool:
    return not getattr(param, "is_flag", False) and not getattr(param, "count", False)


def hoist_global_options(command: Any, args: list[str]) -> list[str]:
    """Move the root's options given after the command (``certs list --store DIR``,
    ``encrypt -v``) to the front, where Click reads them.

    Only whole option tokens before ``--`` move; the value of an option that takes one is
    never taken for an option (``--password-env -v`` stays); an option the command
    defines itself (``certs import --store-password-env``) stays with the command.
    """
    globals_ = {
        name: takes
        for name, takes in _own_options(command).items()
        if name not in ("--version", "-h", "--help")
    }
    front: list[str] = []
    rest: list[str] = []
    current = command
    at_root = True
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        own = {} if at_root else _own_options(current)
        if name in own or (at_root and name in globals_):
            takes = own[name] if name in own else globals_[name]
            rest.append(arg)
            if takes and "=" not in arg and index + 1 < len(args):
                rest.append(args[index + 1])
                index += 1
        elif name in globals_:
            front.append(arg)
            if globals_[name] and "=" not in arg and index + 1 < len(args):
                front.append(args[index + 1])
                index += 1
        else:
            rest.append(arg)
            if not arg.startswith("-") and hasattr(current, "commands"):
                sub = current.commands.get(arg)
                if sub is None:  # an unknown command: leave the rest to Click
                    rest.extend(args[index + 1 :])
                    break
                current = sub
                at_root = False
        index += 1
    return front + rest


def _own_options(command: Any) -> dict[str, bool]:
    """A command's options: name -> whether it takes a value."""
    own: dict[str, bool] = {}
    for param in command.params:
        if getattr(param, "param_type_name", None) == "option":
            for name in param.opts + param.secondary_opts:
                own[name] = _takes_value(param)
    return own


_INTERRUPTED = "interrupted; no partial output was left, retry later"


class _Terminated(BaseException):
    """Raised from the signal handler so that atomic writers clean up on the way out."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def _say(message: str) -> None:
    try:
        # Messages quote file names, addresses and header values: no terminal controls.
        print(f"smimecli: {printable(message)}", file=sys.stderr)
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def run() -> NoReturn:
    """The ``smimecli`` console script (and ``python -m smimecli``): :func:`main`, then a
    fast exit.

    Python's own shutdown (freeing every object and module of the crypto stack) takes
    20-40 ms, a tenth of a small message's wall time in a gateway that runs smimecli once
    per message. By the time :func:`main` returns every output file is
    closed and renamed, and worker processes are joined; the standard streams and the log
    handlers are flushed here, then the process ends with ``os._exit``.
    """
    _reopen_closed_std()
    status = main()
    logging.shutdown()
    status = _flush_stdout(status)
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(status)


def _reopen_closed_std() -> None:
    """Give a closed standard stream (``>&-``, ``<&-``, ``2>&-``) a stand-in.

    Its descriptor gets /dev/null opened the wrong way round, so that no output file of
    ours can take descriptor 0, 1 or 2 (and receive what was meant for the terminal), and
    using the stream fails cleanly: reading a closed standard input is 66, writing a closed
    standard output is 74, and messages for a closed stderr are dropped.
    """
    for fd, flags, name in (
        (0, os.O_WRONLY, "stdin"),
        (1, os.O_RDONLY, "stdout"),
        (2, os.O_WRONLY, "stderr"),
    ):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        try:
            if os.open(os.devnull, flags) != fd:  # the lowest free descriptor: this one
                return
        except OSError:
            return
        if name == "stdin":
            sys.stdin = open(fd, closefd=False)
        else:
            setattr(sys, name, open(fd, "w", closefd=False))


def _stdout_error(exc: OSError) -> str:
    if exc.errno == errno.EPIPE:
        return "cannot write standard output: the reader closed the pipe before the end"
    return f"I/O error writing standard output: {exc.strerror or exc}"


def _flush_stdout(status: int) -> int:
    """Flush standard output; a failure (full, closed, broken pipe) turns a 0 into 74."""
    try:
        flush_stdout()
        sys.stdout.flush()
    except SmimeError as exc:
        if status == 0:
            _say(f"error: {exc.message}")
            return int(exc.status)
    except (OSError, ValueError, AttributeError) as exc:
        if status == 0:
            text = _stdout_error(exc) if isinstance(exc, OSError) else "standard output is closed"
            _say(f"error: {text}")
            return int(ExitStatus.IOERR)
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (the ``smimecli`` console script)."""
    status = _main(argv)
    return _flush_stdout(status)


def _main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = _click_command(args)
    args = hoist_global_options(command, args)
    verbose = "--verbose" in args or "-v" in args
    STATE.store = None
    STATE.store_passphrase = None
    STATE.verbose = verbose
    STATE.quiet = False
    previous: dict[signal.Signals, Any] = {}
    # SIGTERM (postfix, cron, kill) and SIGINT (Ctrl-C) both unwind through the atomic
    # writers, which remove their temporary files; the caller is told to retry (75).
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[signum] = signal.signal(signum, _on_signal)
        except ValueError:  # not the main thread (tests)
            pass
    try:
        result = command.main(args=args, prog_name="smimecli", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except SmimeError as exc:
        if verbose:
            traceback.print_exc()
        for line in exc.message.splitlines():  # several problems (a rules file): one each
            _say(f"error: {line}")
        return int(exc.status)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        # Click's usage errors (exit_code 2) are EX_USAGE for a mail tool.
        if type(exc).__name__ == "NoArgsIsHelpError":
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                print(ctx.get_help())
            return int(ExitStatus.USAGE)
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _say(f"error: {exc.format_message()}{where}")
        return int(ExitStatus.USAGE) if exc.exit_code == 2 else int(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort, _Terminated):
        from smimecli.files import remove_temporaries

        remove_temporaries()  # any the unwinding missed: the message below must be true
        _say(f"error: {_INTERRUPTED}")
        return int(ExitStatus.TEMPFAIL)
    except SystemExit as exc:
        # Click answers a broken pipe with exit 1 and a silenced stdout.
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            _say(f"error: {_stdout_error(BrokenPipeError(errno.EPIPE, 'Broken pipe'))}")
            return int(ExitStatus.IOERR)
        return int(exc.code) if isinstance(exc.code, int) else int(ExitStatus.SOFTWARE)
    except OSError as exc:
        # Our own files map their errors where they are opened; an OS error that gets here
        # was met on a standard stream (print, JSON): an I/O error, not a bug.
        if verbose:
            traceback.print_exc()
        where = f" on {exc.filename}" if exc.filename else ""
        text = (
            _stdout_error(exc)
            if not where and exc.errno in (errno.EPIPE, errno.ENOSPC, errno.EBADF, errno.EIO)
            else f"I/O error{where}: {exc.strerror or exc}"
        )
        _say(f"error: {text}")
        return int(ExitStatus.IOERR)
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        _say(
            f"internal error: {type(exc).__name__}: {exc} "
            "(a bug; run with --verbose for the traceback)"
        )
        return int(ExitStatus.SOFTWARE)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

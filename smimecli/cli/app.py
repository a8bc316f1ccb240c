"""The root command: global options, command registration, and the one place where
errors become exit statuses (STYLE principle 2).

No ``from __future__ import annotations`` here: Typer would have to evaluate every
annotation string again on each run (about 10 ms of a gateway's per-message start-up).
"""

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
from smimecli.cli.common import STATE, StorePasswordEnvOpt, configure_logging
from smimecli.errors import ExitStatus, SmimeError


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

        # The store reads SMIMECLI_STORE_PASSWORD wherever it is opened (this process only).
        passphrase = read_password(password_env=store_password_env) or b""
        os.environ["SMIMECLI_STORE_PASSWORD"] = passphrase.decode("utf-8")
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


_INTERRUPTED = "interrupted; no partial output was left, retry later"


class _Terminated(BaseException):
    """Raised from the signal handler so that atomic writers clean up on the way out."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def _say(message: str) -> None:
    try:
        print(f"smimecli: {message}", file=sys.stderr)
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def run() -> NoReturn:
    """The ``smimecli`` console script (and ``python -m smimecli``): :func:`main`, then a
    fast exit.

    Python's own shutdown (freeing every object and module of the crypto stack) takes
    20-40 ms, a tenth of a small message's wall time in a gateway that runs smimecli once
    per message (SPEC section 5). By the time :func:`main` returns every output file is
    closed and renamed, and worker processes are joined; the standard streams and the log
    handlers are flushed here, then the process ends with ``os._exit``.
    """
    status = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            if status == 0:
                status = int(ExitStatus.IOERR)
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (the ``smimecli`` console script)."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args or "-v" in args
    STATE.store = None
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
    command = _click_command(args)
    try:
        result = command.main(args=args, prog_name="smimecli", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except SmimeError as exc:
        if verbose:
            traceback.print_exc()
        _say(f"error: {exc.message}")
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
        _say(f"error: {_INTERRUPTED}")
        return int(ExitStatus.TEMPFAIL)
    except BrokenPipeError:
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
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass

"""``smimecli tnef``: winmail.dat conversion on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smimecli.cli.common import (
    OutputOpt,
    info,
    input_name,
    is_std,
    stdin_binary,
    warn,
    write_output,
)

app = typer.Typer(
    help="Turn Outlook winmail.dat (TNEF) parts into plain MIME.", no_args_is_help=True
)


@app.command("convert")
def convert(
    input: Annotated[
        Path | None,
        typer.Argument(
            help="The message file; '-' or none reads standard input.",
            metavar="INPUT",
            show_default=False,
        ),
    ] = None,
    *,
    output: OutputOpt = None,
) -> None:
    """Replace every winmail.dat part of a message with plain MIME parts.

    The plain and HTML bodies become text parts, the RTF body a body.rtf
    attachment when there is no other body, every attachment a MIME part with
    its long file name, embedded messages message/rfc822 parts. Everything else
    is copied byte for byte; line endings follow the input.

    A TNEF part that cannot be read, or that holds a meeting request or another
    non-mail item, stays as it was, with a warning. A message without TNEF
    comes out unchanged. The number of converted parts goes to stderr (not
    with --quiet). Exit 65 when the input is not a mail message at all.
    """
    from smimecli.errors import DataError
    from smimecli.files import read_input
    from smimecli.tnef.splice import convert_message, looks_like_message

    where = input_name(input)
    if is_std(input):
        data = stdin_binary().read()
    else:
        assert input is not None
        data = read_input(input)
    if not looks_like_message(data):
        raise DataError(f"{where} is not a mail message (it does not start with a header line)")
    result = convert_message(data)
    for warning in result.warnings:
        warn(warning)
    write_output(result.data, output, private=True)
    info(f"converted {result.converted} TNEF part(s)")

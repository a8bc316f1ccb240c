"""``smimecli tnef``."""

from __future__ import annotations

import typer

app = typer.Typer(help="tnef commands.", no_args_is_help=True)

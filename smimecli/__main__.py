"""``python -m smimecli``."""

from smimecli.cli.app import run

run()

"""The Typer command-line interface: the only code that imports typer or rich."""

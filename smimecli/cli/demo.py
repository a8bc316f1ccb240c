"""``smimecli demo``: the whole workflow in a throwaway store."""

from __future__ import annotations

from smimecli.errors import UsageError


def demo() -> None:
    """Run the whole workflow end to end in a throwaway store."""
    raise UsageError("demo is not implemented yet")

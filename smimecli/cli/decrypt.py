"""``smimecli decrypt`` and ``smimecli inspect``."""

from __future__ import annotations

from smimecli.errors import UsageError


def decrypt() -> None:
    """Decrypt an S/MIME enveloped message with a private key."""
    raise UsageError("decrypt is not implemented yet")


def inspect() -> None:
    """Show what an S/MIME message holds (recipients, algorithms) without a key."""
    raise UsageError("inspect is not implemented yet")

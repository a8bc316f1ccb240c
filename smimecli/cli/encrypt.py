"""``smimecli encrypt``: direct mode (--cert) and rules mode (--rules)."""

from __future__ import annotations

from smimecli.errors import UsageError


def encrypt() -> None:
    """Encrypt messages to certificates (--cert) or by rules (--rules)."""
    raise UsageError("encrypt is not implemented yet")

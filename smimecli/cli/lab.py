"""``smimecli gen-root`` and ``smimecli issue-user``: lab certificates."""

from __future__ import annotations

from smimecli.errors import UsageError


def gen_root() -> None:
    """Create a self-signed root CA certificate (like New-SelfSignedCertificate)."""
    raise UsageError("gen-root is not implemented yet")


def issue_user() -> None:
    """Issue an S/MIME user certificate from a CA certificate."""
    raise UsageError("issue-user is not implemented yet")

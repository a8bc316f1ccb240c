"""Plain test messages the tests share: header fields, a blank line, the body."""

from __future__ import annotations

__all__ = ["message"]


def message(
    to: str = "alice@example.com",
    body: bytes = b"hello\n",
    *,
    sender: str = "a@example.com",
    subject: str = "test",
    cc: str | None = None,
    bcc: str | None = None,
    content_type: str | None = None,
    newline: bytes = b"\n",
) -> bytes:
    """A message From ``sender`` To ``to`` (then Cc, Bcc, Subject and Content-Type when
    given) with ``body`` as it is; header lines end with ``newline``."""
    fields = [("From", sender), ("To", to), ("Cc", cc), ("Bcc", bcc), ("Subject", subject)]
    fields.append(("Content-Type", content_type))
    head = b"".join(f"{name}: {value}".encode() + newline for name, value in fields if value)
    return head + newline + body

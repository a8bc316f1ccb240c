"""Notices: the warnings a library call returns as values instead of printing them.

A library function never writes to stderr or logs. What a person should hear about (a weak
cipher, an expiring certificate, a recipient who gets plaintext, a TNEF part kept as it
was) travels back as a :class:`Notice` in the call's result; the command line, the batch
runner and the SMTP daemon decide how to show it (stderr, ``--json``, the journal).

Each notice has a stable ``code`` a program can test for, one line of ``text`` for a
person, and the recipient ``address`` it is about, if any. The same notice reached by two
paths (the plan and the envelope both see a weak cipher) is reported once:
:func:`merge_notices` keeps the first of each ``(code, address, text)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ABOUT_SOURCES", "Notice", "merge_notices"]

# Codes of notices about the certificate sources (a file skipped in a folder source, a key
# without its certificate), not about one message: a batch shows each of them once.
ABOUT_SOURCES = frozenset({"skipped-file", "skipped-certificate", "key-without-certificate"})


@dataclass(frozen=True)
class Notice:
    """One warning for a person.

    Attributes:
        code: a stable, kebab-case name for the kind of warning (``weak-cipher``,
            ``oaep-sha1``, ``cert-expiring``, ``plaintext-recipient`` ...).
        text: one line a person can act on.
        address: the recipient address it is about, when it is about one.
    """

    code: str
    text: str
    address: str | None = None

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> dict[str, str]:
        """The notice as ``--json`` and the journal show it."""
        document = {"code": self.code, "text": self.text}
        if self.address is not None:
            document["address"] = self.address
        return document


def merge_notices(*groups: Iterable[Notice]) -> tuple[Notice, ...]:
    """All notices of ``groups`` in order, each ``(code, address, text)`` once."""
    seen: set[tuple[str, str | None, str]] = set()
    merged: list[Notice] = []
    for group in groups:
        for notice in group:
            key = (notice.code, notice.address, notice.text)
            if key not in seen:
                seen.add(key)
                merged.append(notice)
    return tuple(merged)

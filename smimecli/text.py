"""Text shown to a person, made safe for a terminal.

Header values, certificate names, addresses and file names come from other people; printed
as they are, an ESC or OSC sequence in them would drive the terminal (clear the screen, set
the window title, hide text) and a bidi override would reorder what the reader sees.
:func:`printable` shows such characters as visible escapes instead. Machine output
(``--json``) is exact and is not passed through it: JSON escapes control characters itself.
"""

from __future__ import annotations

# Characters a terminal acts on rather than shows: C0 controls, DEL, C1 controls, and the
# Unicode bidi embedding, override and isolate controls.
_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
_UNSAFE = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
_UNSAFE.update({code: f"\\u{code:04x}" for code in _BIDI})
del _UNSAFE[ord("\t")]
_LINES = {code: shown for code, shown in _UNSAFE.items() if code != ord("\n")}


def printable(text: object, *, newlines: bool = False) -> str:
    """``text`` (``str()`` of any value) with terminal controls shown as ``\\xNN`` or
    ``\\uNNNN``; tab is kept, and newline too when ``newlines`` (it is layout there)."""
    return str(text).translate(_LINES if newlines else _UNSAFE)


SHOWN_ITEMS = 10  # a list in a report line (a certificate's addresses) shows this many


def shown_list(items: list[str], *, empty: str = "-", limit: int = SHOWN_ITEMS) -> str:
    """``items`` joined with commas, the first ``limit`` of them and then how many more: a
    certificate with 10,000 addresses still gives a short line."""
    if not items:
        return empty
    more = len(items) - limit
    shown = ", ".join(items[:limit])
    return f"{shown} and {more:,} more" if more > 0 else shown

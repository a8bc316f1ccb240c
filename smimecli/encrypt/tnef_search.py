"""Whether a message holds a TNEF (winmail.dat) part, found without loading it: its own
header fields, else a linear search of the body for a part's header that names one."""

from __future__ import annotations

import re

from smimecli.mime import HeaderBlock

# A TNEF part is application/ms-tnef, or an octet-stream named winmail.dat.
_TNEF_NEEDLES = (b"ms-tnef", b"winmail.dat")
# Only a part's own header names it: a Content-Type or Content-Disposition field (or a
# folded line of one) in a block of header lines that follows a boundary line, a blank
# line or the start of the body. A body that merely mentions the words is streamed, never
# loaded whole. The search looks back at most _HEADER_REACH bytes and _HEADER_LINES lines
# from a mention, and gives up (no TNEF) after _MAX_FALSE_MARKS mentions that are not a
# part's header, so its cost stays linear whatever the body says.
_TNEF_CANDIDATE = re.compile(
    rb"^(?:content-(?:type|disposition)[ \t]*:|[ \t])[^\n]*?(?:ms-tnef|winmail\.dat)",
    re.MULTILINE,
)
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_CONTENT_FIELD = re.compile(rb"content-(?:type|disposition)[ \t]*:")
_HEADER_REACH = 1 << 16
_HEADER_LINES = 64
_MAX_FALSE_MARKS = 1000


def _has_needle(lowered: bytes) -> bool:
    return any(lowered.find(needle) >= 0 for needle in _TNEF_NEEDLES)


def _tnef_marks(headers: HeaderBlock, convert_tnef: bool) -> tuple[bool, bool]:
    """(the header block names a TNEF part, the body must be searched for one)."""
    own = " ".join(headers.get_all("Content-Type") + headers.get_all("Content-Disposition"))
    has_tnef = convert_tnef and _has_needle(own.lower().encode("utf-8", "replace"))
    # A TNEF part below the top level needs a multipart (or message/rfc822) body to hold
    # it; a single-part body (text, a PDF...) is not searched. Any "multipart" or
    # "message" in the field, even a malformed one, means search.
    content_type = (headers.get("Content-Type") or "").lower()
    search = (
        convert_tnef and not has_tnef and ("multipart" in content_type or "message" in content_type)
    )
    return has_tnef, search


class _TnefSearch:
    """A search for a TNEF part's header, chunk by chunk (lines may span chunks): see
    _TNEF_CANDIDATE. Memory: one chunk and _HEADER_REACH bytes of the one before."""

    def __init__(self) -> None:
        self.found = False
        self._tail = b""
        self._truncated = False  # the tail no longer starts at the start of the body
        self._false_marks = 0

    def feed(self, chunk: bytes) -> bool:
        """Look at one more chunk; True once a TNEF part's header has been seen."""
        if self.found or self._false_marks > _MAX_FALSE_MARKS:
            return self.found
        # lower() + find is ~5x faster than a regex on big bodies: the regex runs only on
        # chunks that mention a mark at all.
        window = self._tail + chunk.lower()
        # Lines that started in the previous chunk are looked at again, whole.
        pos = self._tail.rfind(b"\n") + 1
        mentioned = any(window.find(needle, pos) >= 0 for needle in _TNEF_NEEDLES)
        for match in _TNEF_CANDIDATE.finditer(window, pos) if mentioned else ():
            if _part_header_at(window, match.start(), truncated=self._truncated):
                self.found = True
                return True
            self._false_marks += 1
            if self._false_marks > _MAX_FALSE_MARKS:
                break
        if len(window) > _HEADER_REACH:
            self._truncated = True
            self._tail = window[-_HEADER_REACH:]
        else:
            self._tail = window
        return False


def _part_header_at(text: bytes, line: int, *, truncated: bool) -> bool:
    """Whether the line starting at ``line`` (lower case) belongs to a Content-Type or
    Content-Disposition field of a part's header block (see _TNEF_CANDIDATE)."""
    stop = max(0, line - _HEADER_REACH)
    field: bool | None = None  # the field the mention is in: a Content-* one or not
    for _ in range(_HEADER_LINES):
        newline = text.find(b"\n", line)
        bare = text[line : newline if newline >= 0 else len(text)].rstrip(b"\r")
        if not bare or bare.startswith(b"--"):
            # A blank line or a boundary line: the header block starts below it.
            return bool(field)
        if bare[:1] not in (b" ", b"\t"):
            if not _FIELD_START.match(bare):
                return False  # body text, not a header block
            if field is None:
                field = _CONTENT_FIELD.match(bare) is not None
                if not field:
                    return False
        if line == 0:
            return bool(field) and not truncated  # the start of the body
        if line <= stop:
            return False
        line = text.rfind(b"\n", 0, line - 1) + 1
    return False

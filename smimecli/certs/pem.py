"""PEM armour (RFC 7468): the blocks of a file, their labels and their decoded bodies.

Both certificate files (:mod:`smimecli.certs.formats`) and key files
(:mod:`smimecli.certs.keys`) are read with it.
"""

from __future__ import annotations

import base64
import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

from smimecli.cms import der

CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
PKCS7_LABELS = {b"PKCS7", b"CMS", b"PKCS #7 SIGNED DATA"}
KEY_LABELS = {
    b"PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"DSA PRIVATE KEY",
}
# PEM blocks (RFC 7468): BEGIN and END lines found in one pass each, then paired, so a file
# of many BEGIN lines without their END costs linear time (a backtracking regex spanning
# BEGIN..END rescanned the rest of the file for each one). smimecli.certs.keys reads key files
# with it too.
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,64})-----\r?\n")
_PEM_END = re.compile(rb"-----END ([A-Z0-9 ]{1,64})-----")


@dataclass
class PemBlock:
    """One PEM block: ``label`` (``CERTIFICATE``...), base64 ``body``, the ``whole`` block."""

    label: bytes
    body: bytes
    whole: bytes


def pem_blocks(data: bytes) -> Iterator[PemBlock]:
    """Every PEM block of ``data``, in order: each BEGIN line with the first END line of the
    same label after it; a BEGIN without its END is skipped."""
    ends: dict[bytes, list[int]] = {}
    for end in _PEM_END.finditer(data):
        ends.setdefault(end.group(1), []).append(end.start())
    pos = 0
    while True:
        begin = _PEM_BEGIN.search(data, pos)
        if begin is None:
            return
        label = begin.group(1)
        starts = ends.get(label, [])
        index = bisect.bisect_left(starts, begin.end())
        if index == len(starts):
            pos = begin.start() + 1
            continue
        stop = starts[index]
        close = stop + len(label) + 14  # "-----END " + label + "-----"
        yield PemBlock(label, data[begin.end() : stop], data[begin.start() : close])
        pos = close


def pem_body(body: bytes) -> bytes:
    """Decode a PEM block's base64 body, without RFC 1421 ``Name: value`` header lines."""
    text = b"".join(line for line in body.splitlines() if b":" not in line)
    return base64.b64decode(text, validate=False)


def strip_trust(blob: bytes) -> bytes:
    """OpenSSL's TRUSTED CERTIFICATE is a certificate followed by trust settings."""
    try:
        _, start, length = der.read_header(blob, 0)
    except ValueError:
        return blob
    return blob if length is None else blob[: start + length]

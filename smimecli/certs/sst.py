"""Microsoft serialized certificate stores (.sst), read and written.

The format is what ``CertSaveStore(CERT_STORE_SAVE_AS_STORE)`` writes and
``certutil -generateSSTFromWU`` produces: an 8-byte header (``00000000`` + ``CERT``), then
elements ``{u32 property id, u32 encoding type, u32 length, bytes}`` in little-endian.
Property elements (0x0b friendly name in UTF-16LE, 0x03 SHA-1 hash, ...) precede the
certificate element (0x20, DER) they belong to; 0x21 is a CRL and 0x22 a CTL; a 12-byte
all-zero element ends the store. Every length is checked against the data left, so a
hostile file ends in :class:`~smimecli.errors.DataError`, never a crash.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from smimecli.errors import DataError

MAGIC = b"\x00\x00\x00\x00CERT"
PROP_SHA1_HASH = 0x03
PROP_FRIENDLY_NAME = 0x0B
ELEMENT_CERT = 0x20
ELEMENT_CRL = 0x21
ELEMENT_CTL = 0x22
_ENCODING_X509_ASN = 1
_HEADER = struct.Struct("<III")


@dataclass
class SstElement:
    """One certificate element of a serialized store with the properties before it."""

    der: bytes
    friendly_name: str | None
    offset: int


def is_sst(data: bytes) -> bool:
    """Whether ``data`` starts like a serialized store."""
    return data.startswith(MAGIC)


def _decode_friendly_name(value: bytes) -> str | None:
    text = value.decode("utf-16-le", "replace").split("\x00", 1)[0]
    return text or None


def read_sst(data: bytes, *, source: str = "") -> list[SstElement]:
    """Parse a serialized store into its certificate elements.

    CRL and CTL elements are skipped; properties are attached to the certificate that
    follows them. Raises DataError for a bad header, a length past the end, or a missing
    end marker.
    """
    where = f" in {source}" if source else ""
    if not is_sst(data):
        raise DataError(f"not a serialized certificate store{where}: bad header")
    pos = len(MAGIC)
    props: dict[int, bytes] = {}
    found: list[SstElement] = []
    while True:
        if len(data) - pos < _HEADER.size:
            raise DataError(f"serialized store{where} is truncated at byte {pos} (no end marker)")
        prop_id, _encoding, length = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        if prop_id == 0 and length == 0:
            return found
        if length > len(data) - start:
            raise DataError(
                f"serialized store{where} is corrupt: element at byte {pos} claims "
                f"{length} bytes, only {len(data) - start} left"
            )
        value = data[start : start + length]
        if prop_id == ELEMENT_CERT:
            name = props.get(PROP_FRIENDLY_NAME)
            found.append(SstElement(value, _decode_friendly_name(name) if name else None, pos))
            props = {}
        elif prop_id in (ELEMENT_CRL, ELEMENT_CTL):
            props = {}
        else:
            props[prop_id] = value
        pos = start + length


def _element(prop_id: int, value: bytes) -> bytes:
    return _HEADER.pack(prop_id, _ENCODING_X509_ASN, len(value)) + value


def write_sst(entries: list[tuple[bytes, str | None]]) -> bytes:
    """Serialize (DER, friendly name) pairs the way Windows does.

    Each certificate gets its SHA-1 hash property and, when given, its friendly name
    (UTF-16LE with a terminating NUL, as CertSetCertificateContextProperty stores it).
    """
    parts = [MAGIC]
    for der, friendly_name in entries:
        if friendly_name:
            parts.append(_element(PROP_FRIENDLY_NAME, (friendly_name + "\x00").encode("utf-16-le")))
        parts.append(_element(PROP_SHA1_HASH, hashlib.sha1(der).digest()))
        parts.append(_element(ELEMENT_CERT, der))
    parts.append(b"\x00" * _HEADER.size)
    return b"".join(parts)

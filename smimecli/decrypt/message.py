"""Decrypting and inspecting whole S/MIME messages.

Where the CMS is found: a message whose Content-Type is ``application/pkcs7-mime`` or
``application/x-pkcs7-mime`` (RFC 8551 3.2), or ``application/octet-stream`` named ``*.p7m``
(RFC 8551 3.2.2), with a base64 or binary body; or a bare DER/BER ContentInfo; or PEM
(``-----BEGIN PKCS7-----`` / ``CMS``). Base64 is decoded as it is read, so memory does not
grow with the message (GCM content and the several-candidate case are spooled; see
:mod:`smimecli.cms.open`).

The output of a message is a readable .eml: the input's header fields other than
``Content-*`` and ``MIME-Version``, in order (fields the decrypted entity repeats are dropped
from the outside), then the entity's own header fields and body, in the input's line ending.
A bare CMS input gives the decrypted content byte for byte. An opaque signed-data layer
inside is left as it is.

Signed outside: when the envelope was signed after it was made (``multipart/signed``, or
an opaque signed-data around it, as Thunderbird's corpus has them), :func:`open_envelope`
takes the signed content out, layer by layer (at most
:data:`smimecli.decrypt.unsign.MAX_SIGNATURE_LAYERS`), without verifying it, and warns once per
layer; the outer headers are those of the outermost message. See :mod:`smimecli.decrypt.unsign`.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from smimecli.certs.keys import PrivateKey
from smimecli.certs.names import display_asn1_name
from smimecli.cms import OID_AUTH_ENVELOPED_DATA, OID_ENVELOPED_DATA, OID_SIGNED_DATA
from smimecli.cms.ber import BerReader, Tlv
from smimecli.cms.open import (
    CONTENT_TYPES,
    EnvelopeHead,
    NoKeyError,
    decrypt_content,
    looks_binary,
    no_key_error,
    read_content_type,
    read_head,
)
from smimecli.cms.unwrap import KeyIdentity, RecipientEntry, RecipientId
from smimecli.decrypt.unsign import (
    MAX_SIGNATURE_LAYERS,
    SignatureLayer,
    SignedOnlyError,
    multipart_signed_content,
    not_verified_warning,
    signed_data_content,
)
from smimecli.errors import DataError
from smimecli.mime import (
    CRLF,
    LF,
    PKCS7_TYPES,
    Canonicalizer,
    HeaderBlock,
    PeekedStream,
    has_p7m_name,
    parse_header_block,
    read_header_block,
)

log = logging.getLogger("smimecli")

_CHUNK = 1 << 16
_MAX_ENTITY_HEADER = 8 << 20

KeyLookup = Callable[[list[RecipientEntry]], list[KeyIdentity]]


# --- finding the CMS --------------------------------------------------------------------------


class Base64Reader:
    """Decodes base64 text read line by line, as a binary stream (RFC 2045 6.8).

    Whitespace is ignored; reading stops at end of input, at a PEM ``-----END`` line, or at
    a MIME boundary line (``--``). Anything else that is not base64 is a DataError. Reads
    go in blocks of 1 MiB, not lines, which keeps big messages fast.
    """

    def __init__(self, source: Any, what: str) -> None:
        self._source = source
        self._what = what
        self._pending = b""
        self._buffer = b""
        self._pos = 0
        self._done = False

    def _fill(self, want: int) -> None:
        parts: list[bytes] = []
        size = 0
        while size < want and not self._done:
            block = self._source.read(1 << 20)
            if not block:
                self._done = True
                break
            # "-" is not in the base64 alphabet: it starts "-----END" or a "--boundary".
            cut = block.find(b"-")
            if cut >= 0:
                block = block[:cut]
                self._done = True
            data = self._pending + block.translate(None, b" \t\r\n")
            usable = len(data) - len(data) % 4
            self._pending = data[usable:]
            if usable:
                decoded = self._decode(data[:usable])
                parts.append(decoded)
                size += len(decoded)
        if self._done and self._pending:
            pending, self._pending = self._pending, b""
            parts.append(self._decode(pending + b"=" * (-len(pending) % 4)))
        self._buffer += b"".join(parts)

    def _decode(self, data: bytes) -> bytes:
        try:
            return binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error as exc:
            problem = str(exc).splitlines()[0] if str(exc) else "bad base64"
            raise DataError(f"{self._what}: the base64 body is damaged ({problem})") from exc

    def read(self, size: int = -1) -> bytes:
        """Read decoded bytes."""
        if size < 0:
            size = 1 << 62
        if len(self._buffer) - self._pos < size and not self._done:
            # Drop what was consumed, then decode more (offsets avoid re-slicing big buffers).
            self._buffer = self._buffer[self._pos :]
            self._pos = 0
            self._fill(max(size - len(self._buffer), _CHUNK))
        data = self._buffer[self._pos : self._pos + size]
        self._pos += len(data)
        return data


@dataclass
class LocatedCms:
    """The CMS bytes of an input and the headers around them."""

    stream: Any  # a binary stream positioned at the ContentInfo (or the multipart body)
    headers: HeaderBlock | None  # None for a bare DER or PEM input
    multipart_signed: bool = False  # stream is the body of a multipart/signed entity


class _NotSmimeError(DataError):
    """The input is not S/MIME at all (inside a signature: signed but not encrypted)."""


def locate_cms(src: BinaryIO, what: str) -> LocatedCms:
    """Find the CMS ContentInfo in a message, a bare DER/BER file, or a PEM file."""
    head = src.read(64) or b""
    stripped = head.lstrip()
    if head[:1] == b"\x30":
        return LocatedCms(PeekedStream(head, src), None)
    if stripped.startswith(b"-----BEGIN"):
        stream = PeekedStream(head, src)
        stream.readline(1 << 16)  # the BEGIN line
        return LocatedCms(Base64Reader(stream, what), None)
    if not head:
        raise _NotSmimeError(f"{what} is empty: not an S/MIME message")
    headers, body = read_header_block(PeekedStream(head, src))
    if not headers.fields:
        raise _NotSmimeError(f"{what} is not an S/MIME message, a DER/BER CMS or a PEM file")
    ctype = headers.content_type()
    if ctype.mime_type == "multipart/signed":  # RFC 8551 3.5.3: signed outside
        return LocatedCms(body, headers, multipart_signed=True)
    is_p7m = has_p7m_name(headers, ctype)
    if not (
        ctype.mime_type in PKCS7_TYPES or (ctype.mime_type == "application/octet-stream" and is_p7m)
    ):
        raise _NotSmimeError(
            f"{what} is not an S/MIME encrypted message (Content-Type: {ctype.mime_type})"
        )
    encoding = (headers.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if encoding == "base64":
        return LocatedCms(Base64Reader(body, what), headers)
    if encoding in ("binary", "8bit", "7bit"):
        return LocatedCms(body, headers)
    raise DataError(f"{what}: unsupported Content-Transfer-Encoding {encoding} for S/MIME")


@dataclass
class OpenedEnvelope:
    """The envelope found in an input, its content type read, and what was around it."""

    reader: BerReader
    known: tuple[str, list[Iterator[Tlv]]]  # what read_content_type returned
    headers: HeaderBlock | None  # of the outermost message; None for bare CMS all the way
    layers: list[SignatureLayer] = field(default_factory=list)


def open_envelope(src: BinaryIO, what: str) -> OpenedEnvelope:
    """Find the CMS in an input, taking out any signature layers around it (unverified).

    Raises:
        SignedOnlyError: signed, with no envelope inside at any depth (65).
        DataError: more than MAX_SIGNATURE_LAYERS signatures, or a broken structure (65).
    """
    layers: list[SignatureLayer] = []
    headers: HeaderBlock | None = None
    stream: Any = src
    for _ in range(MAX_SIGNATURE_LAYERS + 1):
        try:
            located = locate_cms(stream, what)
        except _NotSmimeError:
            if layers:
                raise SignedOnlyError(what, len(layers), headers) from None
            raise
        if headers is None:
            headers = located.headers
        if located.multipart_signed:
            assert located.headers is not None
            boundary = located.headers.content_type().param("boundary")
            stream, layer = multipart_signed_content(boundary, located.stream, what)
            layers.append(layer)
            continue
        reader = BerReader(located.stream, what=f"the CMS structure of {what}")
        oid, levels = read_content_type(reader)
        if oid == OID_SIGNED_DATA:  # RFC 8551 3.5.2: opaque signed-data
            stream, layer = signed_data_content(reader, levels, what)
            layers.append(layer)
            continue
        return OpenedEnvelope(reader, (oid, levels), headers, layers)
    raise DataError(
        f"{what} is wrapped in more than {MAX_SIGNATURE_LAYERS} signature layers: "
        "not a usable message"
    )


def warn_unverified(layers: list[SignatureLayer]) -> None:
    """One warning per signature layer taken off, outermost first."""
    signers = [layer.signer() for layer in reversed(layers)]  # innermost is read first
    for signer in reversed(signers):
        log.warning(not_verified_warning(signer))


# --- writing the result -----------------------------------------------------------------------


def _entity_head(chunks: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """Collect plaintext until the entity's header block is complete (or clearly absent)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        if b"\n\n" in buffer or b"\n\r\n" in buffer or len(buffer) > _MAX_ENTITY_HEADER:
            break
        if not buffer.startswith((b"\r", b"\n")) and b":" not in buffer.split(b"\n", 1)[0]:
            break  # the first line is not a header field: no header block
    return buffer, chunks


def write_entity(
    outer: HeaderBlock, plaintext: Iterator[bytes], dst: BinaryIO, *, what: str = "the message"
) -> None:
    """Write the outer header fields around the decrypted entity.

    The content of an S/MIME message is a MIME entity (RFC 8551 section 3.1), or at least
    text (``openssl smime -encrypt`` of a plain file). Binary content without a header block
    is what a wrong content key gives (CBC has no MAC: a random key passes the padding
    check once in about 256 tries), so it is reported with the one error of a wrong key,
    and nothing is written.
    """
    first, rest = _entity_head(plaintext)
    entity, _ = parse_header_block(first)
    if not entity.fields and not first.startswith((CRLF, LF)) and looks_binary(first):
        raise no_key_error(what)
    inner_names = {item.lname for item in entity.fields}
    newline = outer.newline
    kept = [
        item
        for item in outer.fields
        if not item.lname.startswith("content-")
        and item.lname != "mime-version"
        and item.lname not in inner_names
    ]
    convert = Canonicalizer(CRLF if newline == CRLF else LF)
    dst.write(b"".join(item.with_newline(newline) for item in kept))
    if not entity.fields and not first.startswith((CRLF, LF)):
        dst.write(newline)  # content without header fields: its text follows a blank line
    dst.write(convert.feed(first))
    for chunk in rest:
        out = convert.feed(chunk)
        if out:
            dst.write(out)
    dst.write(convert.flush())


# --- public API -------------------------------------------------------------------------------


@dataclass
class DecryptResult:
    """What was decrypted: the CMS content type and cipher, and how many recipients."""

    content_type: str
    cipher: str
    recipients: int


def _identities(
    key: PrivateKey | KeyIdentity | Iterable[KeyIdentity] | None,
    cert: Any,
) -> list[KeyIdentity]:
    if key is None:
        return []
    if isinstance(key, KeyIdentity):
        return [key]
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return [KeyIdentity(key, cert)]
    return list(key)


def decrypt_message(
    src: BinaryIO,
    dst: BinaryIO,
    key: PrivateKey | KeyIdentity | Iterable[KeyIdentity] | None = None,
    cert: Any = None,
    *,
    key_lookup: KeyLookup | None = None,
    kek: bytes | None = None,
    what: str = "the message",
    store_finder: StoreFinder | None = None,
    on_signature_layers: Callable[[list[SignatureLayer]], None] | None = None,
) -> DecryptResult:
    """Decrypt an S/MIME message (or bare DER/PEM CMS) from ``src`` into ``dst``.

    Args:
        key: a private key, or KeyIdentity objects (key + certificate).
        cert: the certificate of ``key`` (names the recipient; optional).
        key_lookup: called with the message's recipients when no key is given (the store).
        kek: a key-encryption key for KEKRecipientInfo.
        what: how to name the input in error messages.
        store_finder: names the store's certificates of the recipients when no key fits.
        on_signature_layers: called with the signature layers taken off around the
            envelope (a caller that verifies them); default: warn that they were not.

    Raises:
        AuthError: no key for any recipient, or the message was altered (77); the message
            lists the recipients.
        DataError: not an S/MIME message, or a broken CMS structure (65).
    """
    opened = open_envelope(src, what)
    reader = opened.reader
    head = read_head(reader, what=what, known=opened.known)
    identities = _identities(key, cert)
    if not identities and key_lookup is not None:
        identities = key_lookup(head.recipients)
    plaintext = decrypt_content(reader, head, identities, what=what, kek=kek)
    try:
        if opened.headers is None:
            for chunk in plaintext:
                dst.write(chunk)
        else:
            write_entity(opened.headers, plaintext, dst, what=what)
    except NoKeyError:
        # The recipient list is public: every case (no key, wrong key, altered message)
        # still reads the same.
        detail = describe_recipients(head.recipients, store_finder, what)
        raise no_key_error(what, detail) from None
    (on_signature_layers or warn_unverified)(opened.layers)
    return DecryptResult(head.content_type_name, head.cipher.name, len(head.recipients))


MAX_LISTED = 10


def describe_recipients(
    recipients: list[RecipientEntry], finder: StoreFinder | None, what: str
) -> str:
    """``; it is for: ...; see ...``: the recipients of a message no key opened, each by
    issuer and serial or SKI, with the subject of the store's certificate when known."""
    parts: list[str] = []
    for number, entry in enumerate(recipients[:MAX_LISTED], 1):
        rid = entry.rid
        if rid.kind == "issuer_serial" and rid.issuer is not None:
            who = f"issuer {display_asn1_name(rid.issuer)}, serial {rid.serial or 0:X}"
        elif rid.kind == "ski":
            who = f"subject key identifier {(rid.key_id or b'').hex().upper()}"
        else:
            who = f"KEK id {(rid.key_id or b'').hex().upper()}"
        matches = finder(rid) if finder is not None and rid.kind != "kek_id" else []
        if matches:
            known = matches[0]
            held = "key held" if known.has_key else "no private key"
            who += f" ({known.subject}, {held})"
        parts.append(f"({number}) {who}")
    if not parts:
        return ""
    more = f" and {len(recipients) - MAX_LISTED} more" if len(recipients) > MAX_LISTED else ""
    named = "" if what in ("standard input", "the message") else f" {what}"
    return f"; it is for {' '.join(parts)}{more}; see 'smimecli inspect{named}'"


# --- inspect ----------------------------------------------------------------------------------


@dataclass
class StoreMatch:
    """A store certificate that a recipient identifier names."""

    thumbprint: str
    subject: str
    has_key: bool


StoreFinder = Callable[[RecipientId], list[StoreMatch]]


@dataclass
class InspectReport:
    """What ``smimecli inspect`` shows."""

    headers: list[tuple[str, str]]
    content_type: str
    content_type_oid: str
    cipher: dict[str, Any] | None = None
    recipients: list[dict[str, Any]] = field(default_factory=list)
    signature_layers: int = 0  # unverified signatures around the envelope

    def as_json(self) -> dict[str, Any]:
        """The report as one JSON document."""
        return {
            "headers": [{"name": n, "value": v} for n, v in self.headers],
            "content_type": self.content_type,
            "content_type_oid": self.content_type_oid,
            "cipher": self.cipher,
            "recipients": self.recipients,
            "signature_layers": self.signature_layers,
        }


def _cipher_info(head: EnvelopeHead) -> dict[str, Any]:
    from smimecli.cms.algorithms import parse_algorithm_identifier

    oid = head.content_algorithm_oid
    try:
        parsed = parse_algorithm_identifier(head.content_algorithm_der)
    except DataError:
        return {"name": oid, "oid": oid, "key_bits": None, "supported": False}
    bits = parsed.cipher.effective_bits or parsed.cipher.key_size * 8
    return {"name": parsed.name, "oid": oid, "key_bits": bits, "supported": True}


def _recipient_info(entry: RecipientEntry, finder: StoreFinder | None) -> dict[str, Any]:
    rid = entry.rid
    ident: dict[str, Any] = {"type": rid.kind}
    if rid.kind == "issuer_serial" and rid.issuer is not None:
        ident["issuer"] = display_asn1_name(rid.issuer)
        ident["serial"] = f"{rid.serial:X}"
    else:
        ident["key_id"] = (rid.key_id or b"").hex().upper()
    info: dict[str, Any] = {
        "kind": entry.kind,
        "id": ident,
        "key_encryption": entry.algorithm,
        "key_encryption_oid": entry.algorithm_oid,
    }
    if entry.kind == "ktri" and entry.hash is not None:
        info["oaep_hash"] = entry.hash
        info["mgf1_hash"] = entry.mgf_hash
        info["oaep_label"] = (entry.label or b"").hex()
    if entry.kind == "kari":
        info["kdf_hash"] = entry.hash
        info["key_wrap"] = entry.wrap
    matches = finder(rid) if finder is not None and rid.kind != "kek_id" else []
    info["store"] = [m.__dict__ for m in matches]
    return info


def inspect_message(
    src: BinaryIO, *, store_finder: StoreFinder | None = None, what: str = "the message"
) -> InspectReport:
    """Describe an S/MIME message without any key: headers, CMS type, cipher, recipients."""
    try:
        opened = open_envelope(src, what)
    except SignedOnlyError as exc:
        return InspectReport(
            _header_list(exc.headers),
            "signed-data",
            OID_SIGNED_DATA,
            signature_layers=exc.layers,
        )
    headers = _header_list(opened.headers)
    layers = len(opened.layers)
    head = _read_any_head(opened.reader, what, opened.known)
    if isinstance(head, str):
        return InspectReport(headers, CONTENT_TYPES.get(head, head), head, signature_layers=layers)
    report = InspectReport(
        headers, head.content_type_name, head.content_type, signature_layers=layers
    )
    report.cipher = _cipher_info(head)
    report.recipients = [_recipient_info(e, store_finder) for e in head.recipients]
    return report


def _header_list(block: HeaderBlock | None) -> list[tuple[str, str]]:
    return [(f.name, f.value) for f in block.fields] if block is not None else []


def _read_any_head(
    reader: BerReader, what: str, known: tuple[str, list[Iterator[Tlv]]]
) -> EnvelopeHead | str:
    """The envelope head, or just the content type OID of another kind of CMS."""
    oid, levels = known
    if oid not in (OID_ENVELOPED_DATA, OID_AUTH_ENVELOPED_DATA):
        return oid
    return read_head(reader, what=what, parse_cipher=False, known=(oid, levels))


# --- the store --------------------------------------------------------------------------------


def open_store_if_exists(folder: Any) -> Any:
    """The store in ``folder`` opened read-only, or None when there is none (``inspect``
    then shows no store matches). A damaged, locked or unreadable store is its error
    (78, 75, 74), never "no store"."""
    from pathlib import Path

    from smimecli.certs.store import DB_NAME, Store

    if not (Path(folder) / DB_NAME).exists():
        return None
    return Store.open(folder, readonly=True)


def _store_rows(store: Any, rid: RecipientId) -> list[Any]:
    if rid.kind == "issuer_serial" and rid.issuer is not None and rid.serial is not None:
        return list(store.find_by_issuer_serial(rid.issuer, rid.serial))
    if rid.kind == "ski" and rid.key_id:
        return list(store.find_by_ski(rid.key_id))
    return []


def store_key_lookup(folder: Any, passphrase: bytes | None = None) -> KeyLookup:
    """A key lookup in the store's certificates with private keys (``decrypt`` without --key);
    ``passphrase`` decrypts the store's keys (default ``$SMIMECLI_STORE_PASSWORD``)."""

    def lookup(recipients: list[RecipientEntry]) -> list[KeyIdentity]:
        from smimecli.certs.store import Store

        # The keys must come from the store: a missing one is 78, not "no key" (77).
        store: Any = Store.open(folder, readonly=True, passphrase=passphrase)
        found: list[KeyIdentity] = []
        seen: set[str] = set()
        with store:
            for entry in recipients:
                for row in _store_rows(store, entry.rid):
                    if not row.has_key or row.thumbprint in seen:
                        continue
                    seen.add(row.thumbprint)
                    key = store.private_key(row.thumbprint)
                    if key is not None:
                        found.append(KeyIdentity(key, row.cert))
        return found

    return lookup


def lazy_store_finder(folder: Any) -> StoreFinder:
    """A :func:`store_finder` that opens the store only when asked (error messages), and
    finds nothing when the store cannot be opened."""
    from smimecli.errors import SmimeError

    def find(rid: RecipientId) -> list[StoreMatch]:
        try:
            store = open_store_if_exists(folder)
            if store is None:
                return []
            with store:
                return store_finder(store)(rid)
        except SmimeError:
            return []

    return find


def store_finder(store: Any) -> StoreFinder:
    """Finds the certificates of an open store (or None) that a recipient id names."""

    def find(rid: RecipientId) -> list[StoreMatch]:
        if store is None:
            return []
        rows = _store_rows(store, rid)
        return [StoreMatch(r.thumbprint, r.subject, bool(r.has_key)) for r in rows]

    return find

"""Decrypting whole S/MIME messages: opening the envelope and writing its content.

The envelope is found by :mod:`smimecli.decrypt.locate` (signature layers around it taken
off, unverified), its key by :mod:`smimecli.decrypt.keys`.

The output of a message is a readable .eml: the input's header fields other than
``Content-*`` and ``MIME-Version``, in order (fields the decrypted entity repeats are dropped
from the outside), then the entity's own header fields and body, in the input's line ending.
A bare CMS input gives the decrypted content byte for byte. An opaque signed-data layer
inside is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from smimecli.certs.keys import PrivateKey
from smimecli.certs.names import display_asn1_name
from smimecli.cms.open import NoKeyError, decrypt_content, looks_binary, no_key_error, read_head
from smimecli.cms.unwrap import KeyIdentity, RecipientEntry
from smimecli.decrypt.keys import KeyLookup, StoreFinder, key_identities
from smimecli.decrypt.locate import open_envelope
from smimecli.decrypt.unsign import SignatureLayer, not_verified_warning
from smimecli.mime import CRLF, LF, Canonicalizer, HeaderBlock, parse_header_block
from smimecli.notices import Notice

_MAX_ENTITY_HEADER = 8 << 20
UNVERIFIED_SIGNATURE = "unverified-signature"


def unverified_notices(layers: list[SignatureLayer]) -> tuple[Notice, ...]:
    """One ``unverified-signature`` notice per signature layer taken off, outermost first."""
    signers = [layer.signer() for layer in reversed(layers)]  # innermost is read first
    return tuple(Notice(UNVERIFIED_SIGNATURE, not_verified_warning(s)) for s in reversed(signers))


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
    """What was decrypted: the CMS content type and cipher, how many recipients, and the
    notices for a person (``unverified-signature``: a signature layer around the envelope
    was taken off without being verified)."""

    content_type: str
    cipher: str
    recipients: int
    notices: tuple[Notice, ...] = ()


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
            envelope (a caller that verifies them); default: the result carries one
            ``unverified-signature`` notice per layer. Nothing is logged or printed.

    Raises:
        AuthError: no key for any recipient, or the message was altered (77); the message
            lists the recipients.
        DataError: not an S/MIME message, or a broken CMS structure (65).
    """
    opened = open_envelope(src, what)
    reader = opened.reader
    head = read_head(reader, what=what, known=opened.known)
    identities = key_identities(key, cert)
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
    notices: tuple[Notice, ...] = ()
    if on_signature_layers is not None:
        on_signature_layers(opened.layers)
    else:
        notices = unverified_notices(opened.layers)
    return DecryptResult(head.content_type_name, head.cipher.name, len(head.recipients), notices)


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

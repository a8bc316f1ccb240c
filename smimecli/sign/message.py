"""sign_message: one email in, one S/MIME signed email out (RFC 8551 sections 3.5.2, 3.5.3).

The signed entity is the message's ``Content-*`` fields and body in canonical CRLF form,
made transport-safe first (:mod:`smimecli.transport`), as encrypt builds its inner entity.
The outer RFC 5322 fields (From, To, Subject, Date, Message-ID...) stay outside the
signature, in order; ``Bcc`` is dropped. Two forms:

* detached (default): ``multipart/signed; protocol="application/pkcs7-signature";
  micalg=sha-256`` whose first part is the signed entity and second ``smime.p7s``: readable
  without S/MIME support;
* opaque: ``application/pkcs7-mime; smime-type=signed-data; name=smime.p7m``, the entity
  inside the SignedData.

Output line endings follow the input's (a verifier canonicalises the signed part to CRLF,
RFC 8551 section 3.1.1, so an LF copy on a Unix spool still verifies).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any, BinaryIO

from cryptography import x509

from smimecli.cms.sigalgs import PrivateKey
from smimecli.cms.signed import SignedDataBuilder
from smimecli.errors import DataError
from smimecli.mime import (
    Base64LineWriter,
    HeaderBlock,
    canonical_bytes,
    inner_entity_header,
    read_header_block,
)
from smimecli.transport import make_transport_safe, needs_encoding

__all__ = ["SignOptions", "SignOutcome", "sign_message", "signed_entity"]

_PREAMBLE = b"This is an S/MIME signed message."


@dataclass(frozen=True)
class SignOptions:
    """How to sign.

    Attributes:
        hash: ``sha256``, ``sha384`` or ``sha512``.
        scheme: ``pkcs1v15`` or ``pss`` (RSA keys; EC keys always sign with ECDSA).
        detached: multipart/signed (True) or opaque signed-data (False).
        chain: intermediates (and roots) to include; roots are left out unless
            ``include_root``.
        include_root: include self-signed certificates from ``chain`` too.
        signing_time: the signingTime attribute (default: now).
    """

    hash: str = "sha256"
    scheme: str = "pkcs1v15"
    detached: bool = True
    chain: Sequence[x509.Certificate] = ()
    include_root: bool = False
    signing_time: dt.datetime | None = None


@dataclass
class SignOutcome:
    """What :func:`sign_message` wrote: ``multipart/signed`` or ``signed-data``, the micalg
    and the bytes that were signed (the canonical entity)."""

    form: str
    micalg: str
    entity_size: int


def signed_entity(headers: HeaderBlock, body: BinaryIO | Any) -> bytes:
    """The entity to sign: the Content-* fields and the body, CRLF, transport-safe."""
    entity = inner_entity_header(headers) + canonical_bytes(body.read())
    if needs_encoding(entity):
        entity = make_transport_safe(entity)
    return entity


def _outer(headers: HeaderBlock, content_type: bytes) -> bytes:
    newline = headers.newline
    kept = b"".join(item.with_newline(newline) for item in headers.outer_fields())
    lines = (b"MIME-Version: 1.0", b"Content-Type: " + content_type)
    return kept + b"".join(line + newline for line in lines)


def _to_newline(data: bytes, newline: bytes) -> bytes:
    return data if newline == b"\r\n" else data.replace(b"\r\n", newline)


def _detached(headers: HeaderBlock, entity: bytes, der: bytes, micalg: str, dst: Any) -> None:
    newline = headers.newline
    boundary = b"----=_smimecli_" + secrets.token_hex(12).encode()
    content_type = (
        b'multipart/signed; protocol="application/pkcs7-signature"; micalg='
        + micalg.encode()
        + b'; boundary="'
        + boundary
        + b'"'
    )
    dst.write(_outer(headers, content_type) + newline + _PREAMBLE + newline + newline)
    dst.write(b"--" + boundary + newline)
    dst.write(_to_newline(entity, newline))
    signature_head = (
        b"Content-Type: application/pkcs7-signature; name=smime.p7s",
        b"Content-Transfer-Encoding: base64",
        b"Content-Disposition: attachment; filename=smime.p7s",
    )
    dst.write(newline + b"--" + boundary + newline)
    dst.write(b"".join(line + newline for line in signature_head) + newline)
    writer = Base64LineWriter(dst, newline)
    writer.write(der)
    writer.close()
    dst.write(b"--" + boundary + b"--" + newline)


def _opaque(headers: HeaderBlock, der: bytes, dst: Any) -> None:
    newline = headers.newline
    content_type = b"application/pkcs7-mime; smime-type=signed-data; name=smime.p7m"
    extra = (
        b"Content-Transfer-Encoding: base64",
        b"Content-Disposition: attachment; filename=smime.p7m",
    )
    dst.write(_outer(headers, content_type) + b"".join(line + newline for line in extra))
    dst.write(newline)
    writer = Base64LineWriter(dst, newline)
    writer.write(der)
    writer.close()


def sign_message(
    src: BinaryIO | bytes,
    dst: BinaryIO | Any,
    *,
    cert: x509.Certificate,
    key: PrivateKey,
    options: SignOptions | None = None,
) -> SignOutcome:
    """Sign one message.

    Args:
        src: the message (a binary stream or bytes).
        dst: where the signed message is written.
        cert: the signer's certificate; key: its private key.
        options: hash, RSA scheme, detached or opaque, chain (:class:`SignOptions`).

    Raises:
        DataError: the input has no header block (not a message).
        UsageError: the key does not belong to the certificate, unknown hash or scheme.
    """
    options = options or SignOptions()
    stream = BytesIO(src) if isinstance(src, bytes) else src
    headers, body = read_header_block(stream)
    if not headers.fields:
        raise DataError("the input has no header fields: not an email message")
    entity = signed_entity(headers, body)
    builder = (
        SignedDataBuilder()
        .set_signer(cert, key, scheme=options.scheme)
        .set_hash(options.hash)
        .set_content(entity, detached=options.detached)
        .add_chain(options.chain, include_root=options.include_root)
    )
    if options.signing_time is not None:
        builder.set_signing_time(options.signing_time)
    der = builder.sign()
    micalg = builder.micalg
    if options.detached:
        _detached(headers, entity, der, micalg, dst)
        return SignOutcome("multipart/signed", micalg, len(entity))
    _opaque(headers, der, dst)
    return SignOutcome("signed-data", micalg, len(entity))

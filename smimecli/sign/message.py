"""sign_message: one email in, one S/MIME signed email out (RFC 8551 sections 3.5.2, 3.5.3).

The signed entity is the message's ``Content-*`` fields and body in canonical CRLF form,
made transport-safe first (:mod:`smimecli.mime.transport`), as encrypt builds its inner entity.
The outer RFC 5322 fields (From, To, Subject, Date, Message-ID...) stay outside the
signature, in order; ``Bcc`` is dropped. Two forms:

* detached (default): ``multipart/signed; protocol="application/pkcs7-signature";
  micalg=sha-256`` whose first part is the signed entity and second ``smime.p7s``: readable
  without S/MIME support;
* opaque: ``application/pkcs7-mime; smime-type=signed-data; name=smime.p7m``, the entity
  inside the SignedData.

Output line endings follow the input's (a verifier canonicalises the signed part to CRLF,
RFC 8551 section 3.1.1, so an LF copy on a Unix spool still verifies).

Memory: the canonical entity is written to a spool while it is checked for what needs
re-encoding (:func:`spool_entity`), hashed from it, and copied from it into the output
(inside the DER for the opaque form, whose lengths the spool's size gives), so a message
of any size or number of parts is signed in flat memory. Only an entity that needs
re-encoding (8-bit parts, long lines...) is held in memory while it is rewritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any, BinaryIO

from cryptography import x509

from smimecli.cms import spool
from smimecli.cms.sigalgs import PrivateKey
from smimecli.cms.signed import SignedDataBuilder
from smimecli.errors import DataError, IOFailedError
from smimecli.mime import (
    Base64LineWriter,
    Canonicalizer,
    HeaderBlock,
    canonical_bytes,
    canonicalize,
    inner_entity_header,
    read_header_block,
)
from smimecli.mime.transport import (
    SafetyScan,
    make_transport_safe,
    needs_encoding,
    write_transport_safe,
)
from smimecli.streams import CHUNK, read_chunks

__all__ = [
    "SignOptions",
    "SignOutcome",
    "SignSpool",
    "sign_message",
    "sign_parsed",
    "signed_entity",
    "spool_entity",
]

_PREAMBLE = b"This is an S/MIME signed message."
# Spools of the signing path stay in memory up to this size: a usual message is never
# written to disk, and sign-then-encrypt, with three spools alive, stays small.
SIGN_SPOOL_IN_MEMORY = 2 << 20


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


class SignSpool:
    """A spool of the signing path (:func:`smimecli.cms.spool`, in memory up to
    :data:`SIGN_SPOOL_IN_MEMORY`) whose write errors are smimecli errors: a full or
    unwritable $TMPDIR is an I/O error (74) that names the folder, not a bare OS error."""

    def __init__(self) -> None:
        self._file = spool(SIGN_SPOOL_IN_MEMORY)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write to the spool (to its file beyond the in-memory size)."""
        try:
            return self._file.write(data)
        except OSError as exc:
            import tempfile

            raise IOFailedError(
                f"I/O error writing the signing spool in {tempfile.gettempdir()}: "
                f"{exc.strerror or exc}; free space there or set TMPDIR to another folder"
            ) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> Any:  # used where a BinaryIO is
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def signed_entity(headers: HeaderBlock, body: BinaryIO | Any) -> bytes:
    """The entity to sign: the Content-* fields and the body, CRLF, transport-safe (in
    memory; :func:`sign_message` spools it instead)."""
    entity = inner_entity_header(headers) + canonical_bytes(body.read())
    if needs_encoding(entity):
        entity = make_transport_safe(entity)
    return entity


def spool_entity(headers: HeaderBlock, body: BinaryIO | Any) -> tuple[BinaryIO, int]:
    """:func:`signed_entity` written to a spool (memory up to :data:`SIGN_SPOOL_IN_MEMORY`,
    then an unnamed 0600 file in $TMPDIR that the system removes however the process ends),
    chunk by chunk.

    Returns:
        the spool, at its start, and the entity's length. Only an entity that needs
        re-encoding (:mod:`smimecli.mime.transport`) is read back into memory to be rewritten.
    """
    scan = SafetyScan()
    out: Any = SignSpool()
    try:
        head = inner_entity_header(headers)
        out.write(head)
        scan.feed(head)
        with contextlib.closing(read_chunks(body)) as reads:
            for chunk in canonicalize(reads):
                scan.feed(chunk)
                out.write(chunk)
        length = out.tell()
        if scan.finish():
            out, length = _rewritten(out)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out, length


def _rewritten(entity: BinaryIO) -> tuple[BinaryIO, int]:
    """The spooled entity made transport-safe, part by part, into a new spool (the old
    one is closed). The entity is held in memory while it is rewritten."""
    entity.seek(0)
    data = entity.read()
    entity.close()
    out: Any = SignSpool()
    try:
        write_transport_safe(data, out.write)
    except BaseException:
        out.close()
        raise
    return out, out.tell()


def _outer(headers: HeaderBlock, content_type: bytes) -> bytes:
    newline = headers.newline
    kept = b"".join(item.with_newline(newline) for item in headers.outer_fields())
    lines = (b"MIME-Version: 1.0", b"Content-Type: " + content_type)
    return kept + b"".join(line + newline for line in lines)


def _copy_entity(entity: BinaryIO, newline: bytes, dst: Any) -> None:
    """The spooled entity to ``dst``, in the output's line ending."""
    if newline == b"\r\n":
        shutil.copyfileobj(entity, dst, CHUNK)
        return
    convert = Canonicalizer(newline)
    for chunk in read_chunks(entity):
        dst.write(convert.feed(chunk))
    dst.write(convert.flush())


def _detached(headers: HeaderBlock, entity: BinaryIO, der: bytes, micalg: str, dst: Any) -> None:
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
    _copy_entity(entity, newline, dst)
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


def _opaque(headers: HeaderBlock, framing: tuple[bytes, bytes], entity: BinaryIO, dst: Any) -> None:
    newline = headers.newline
    content_type = b"application/pkcs7-mime; smime-type=signed-data; name=smime.p7m"
    extra = (
        b"Content-Transfer-Encoding: base64",
        b"Content-Disposition: attachment; filename=smime.p7m",
    )
    dst.write(_outer(headers, content_type) + b"".join(line + newline for line in extra))
    dst.write(newline)
    writer = Base64LineWriter(dst, newline)
    writer.write(framing[0])
    for chunk in read_chunks(entity):
        writer.write(chunk)
    writer.write(framing[1])
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
    stream = BytesIO(src) if isinstance(src, bytes) else src
    headers, body = read_header_block(stream)
    return sign_parsed(headers, body, dst, cert=cert, key=key, options=options)


def sign_parsed(
    headers: HeaderBlock,
    body: BinaryIO | Any,
    dst: BinaryIO | Any,
    *,
    cert: x509.Certificate,
    key: PrivateKey,
    options: SignOptions | None = None,
) -> SignOutcome:
    """:func:`sign_message` for a message whose header block the caller has already read
    (``body``: the stream positioned at the first body byte).

    Raises:
        DataError, UsageError: as :func:`sign_message`.
    """
    options = options or SignOptions()
    if not headers.fields:
        raise DataError("the input has no header fields: not an email message")
    entity, length = spool_entity(headers, body)
    with entity:
        builder = (
            SignedDataBuilder()
            .set_signer(cert, key, scheme=options.scheme)
            .set_hash(options.hash)
            .set_content(entity, detached=options.detached)
            .add_chain(options.chain, include_root=options.include_root)
        )
        if options.signing_time is not None:
            builder.set_signing_time(options.signing_time)
        if options.detached:
            der = builder.sign()
            entity.seek(0)
            _detached(headers, entity, der, builder.micalg, dst)
            return SignOutcome("multipart/signed", builder.micalg, length)
        framing = builder.sign_around(length)
        entity.seek(0)
        _opaque(headers, framing, entity, dst)
        return SignOutcome("signed-data", builder.micalg, length)

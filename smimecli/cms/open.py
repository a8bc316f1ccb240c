"""Opening EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083) as a stream.

:func:`read_head` walks the ContentInfo with the streaming BER reader up to the encrypted
content and parses only the small parts (RecipientInfos, the content AlgorithmIdentifier)
with asn1crypto. :func:`decrypt_content` then yields the plaintext:

- CBC content (AES, 3DES, DES, RC2 of any effective size) is decrypted as it is read, in
  constant memory; the last block is held back until the padding is checked.
- AES-GCM content (RFC 5084) must not be released before its tag is verified, and the
  additional authenticated data (authAttrs) comes after the content in the encoding. The
  ciphertext is therefore spooled (in memory up to :data:`smimecli.cms.SPOOL_IN_MEMORY`, then to an
  anonymous temporary file), the tag checked while the plaintext is spooled the same way,
  and only then is the plaintext yielded.
- When a key without a certificate leaves several candidate content keys (see
  :func:`smimecli.cms.unwrap.content_key_candidates`), the ciphertext is spooled and each
  candidate is tried in turn; the first whose padding or tag is right wins.

A bad padding or tag is reported with the same :class:`AuthError` as a missing key: after
RSA implicit rejection a wrong content key is indistinguishable from a wrong private key, and
must stay so. For CBC without integrity protection a wrong key still passes the
padding check with probability about 1/256 and yields garbage; only AuthEnvelopedData
closes that gap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from asn1crypto import algos, cms

from smimecli.cms import (
    OID_AUTH_ENVELOPED_DATA,
    OID_DATA,
    OID_ENVELOPED_DATA,
    OID_SIGNED_DATA,
    spool,
)
from smimecli.cms.ber import (
    CLASS_CONTEXT,
    CLASS_UNIVERSAL,
    TAG_INTEGER,
    TAG_OCTET_STRING,
    TAG_OID,
    TAG_SEQUENCE,
    TAG_SET,
    BerReader,
    Tlv,
    decode_oid,
)
from smimecli.cms.unwrap import (
    KeyIdentity,
    RecipientEntry,
    content_key_candidates,
    list_recipients,
)
from smimecli.errors import AuthError, DataError
from smimecli.streams import read_chunks

CONTENT_TYPES = {
    OID_DATA: "data",
    OID_SIGNED_DATA: "signed-data",
    OID_ENVELOPED_DATA: "enveloped-data",
    "1.2.840.113549.1.7.6": "encrypted-data",
    "1.2.840.113549.1.9.16.1.2": "authenticated-data",
    "1.2.840.113549.1.9.16.1.9": "compressed-data",
    OID_AUTH_ENVELOPED_DATA: "authEnveloped-data",
}

_CHUNK = 1 << 16

# C0 controls other than TAB, LF, VT, FF, CR (and ESC, which ISO-2022 text uses).
_BINARY_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
BINARY_SAMPLE = 256


def looks_binary(head: bytes) -> bool:
    """True when the first bytes hold control characters that text and MIME never have.

    What a wrong CBC key yields (RFC 8551 content is a MIME entity, i.e. text).
    """
    sample = head[:BINARY_SAMPLE]
    return len(sample.translate(None, _BINARY_BYTES)) != len(sample)


class NoKeyError(AuthError):
    """No key opens the message: the one error for a wrong key, a corrupted key block, a
    bad padding or a bad tag (exit 77)."""


def no_key_error(what: str, detail: str = "") -> NoKeyError:
    """The one error for a wrong key, a corrupted key block, a bad padding or a bad tag.

    Args:
        what: the input's name.
        detail: what the message says of its recipients (public, the same in every case).
    """
    return NoKeyError(
        f"cannot decrypt {what}: no private key for any recipient of the message "
        f"(or the message was altered){detail}"
    )


@dataclass
class EnvelopeHead:
    """What the message says before its encrypted content."""

    content_type: str  # OID of the outer ContentInfo
    recipients: list[RecipientEntry] = field(default_factory=list)
    content_algorithm_oid: str = ""  # the content-encryption algorithm, dotted
    cipher: Any = None  # smimecli.cms.algorithms.ContentAlgorithm (cipher, IV, tag length)
    content_algorithm_der: bytes = b""
    content_tlv: Tlv | None = None  # header of encryptedContent, None when absent
    # Children iterators of the containers still open, outermost first: ContentInfo, [0],
    # EnvelopedData, EncryptedContentInfo.
    levels: list[Iterator[Tlv]] = field(default_factory=list)

    @property
    def content_type_name(self) -> str:
        """enveloped-data, authEnveloped-data, signed-data... (RFC 8551 smime-type names)."""
        return CONTENT_TYPES.get(self.content_type, self.content_type)

    @property
    def is_auth_enveloped(self) -> bool:
        """True for AuthEnvelopedData (RFC 5083)."""
        return self.content_type == OID_AUTH_ENVELOPED_DATA

    @property
    def key_length(self) -> int | None:
        """The content key size in bytes when the algorithm fixes it (for implicit rejection).

        None for RC2: senders differ in how long a key they pair with 40 or 64 effective
        bits, so any length is accepted there.
        """
        if self.cipher is None or self.cipher.cipher.family == "rc2":
            return None
        return int(self.cipher.cipher.key_size)


def read_content_type(reader: BerReader) -> tuple[str, list[Iterator[Tlv]]]:
    """Read ``ContentInfo { contentType, [0] EXPLICIT`` (RFC 5652 3).

    Returns the content type OID and the open containers (outermost first), to be resumed
    and closed once the content has been read.
    """
    outer = reader.expect(0, CLASS_UNIVERSAL, TAG_SEQUENCE, "a CMS ContentInfo SEQUENCE")
    outer_fields = reader.children(outer)
    tlv = reader.next_universal(outer_fields, TAG_OID, "the CMS content type")
    oid = decode_oid(reader.read_content(tlv, max_size=256))
    explicit = next(outer_fields, None)
    if explicit is None or not explicit.is_context(0) or not explicit.constructed:
        raise reader.error("expected the CMS content [0]")
    return oid, [outer_fields, reader.children(explicit)]


def read_head(
    reader: BerReader,
    *,
    what: str = "the message",
    parse_cipher: bool = True,
    known: tuple[str, list[Iterator[Tlv]]] | None = None,
) -> EnvelopeHead:
    """Read a ContentInfo up to its encrypted content (RFC 5652 6.1, RFC 5083 2.1).

    Args:
        parse_cipher: check that the content cipher is supported (``inspect`` shows an
            unknown one instead).
        known: what :func:`read_content_type` returned, when the caller has read it.

    Raises DataError when the content type is not enveloped or authEnveloped data, or the
    cipher is not supported.
    """
    oid, levels = known if known is not None else read_content_type(reader)
    head = EnvelopeHead(oid)
    if oid not in (OID_ENVELOPED_DATA, OID_AUTH_ENVELOPED_DATA):
        name = CONTENT_TYPES.get(oid, oid)
        raise DataError(f"{what} is CMS {name}, not an encrypted (enveloped) message")
    body = reader.next_universal(levels[1], TAG_SEQUENCE, "the EnvelopedData SEQUENCE")
    fields = reader.children(body)
    head.recipients = _read_recipients(reader, fields, what)
    eci = reader.next_universal(fields, TAG_SEQUENCE, "the EncryptedContentInfo SEQUENCE")
    parts = reader.children(eci)
    _read_content_algorithm(reader, parts, head, what, parse_cipher=parse_cipher)
    content = next(parts, None)
    if content is not None and not (content.tag_class == CLASS_CONTEXT and content.tag == 0):
        raise reader.error("expected the encrypted content [0]")
    head.content_tlv = content
    # Keep the open levels: decrypt_content resumes them after the content.
    head.levels = [*levels, fields, parts]
    return head


def _read_recipients(reader: BerReader, fields: Iterator[Tlv], what: str) -> list[RecipientEntry]:
    """Read the version, skip originatorInfo and parse the RecipientInfos (RFC 5652 6.1)."""
    version = reader.next_universal(fields, TAG_INTEGER, "the EnvelopedData version")
    reader.read_content(version, max_size=8)  # any version is read the same way
    tlv = next(fields, None)
    if tlv is not None and tlv.is_context(0):  # originatorInfo [0] IMPLICIT (6.1): unused
        reader.read_element(tlv)
        tlv = next(fields, None)
    if tlv is None or not tlv.is_universal(TAG_SET):
        raise reader.error("expected the RecipientInfos SET")
    raw = reader.read_element(tlv)
    try:
        return list_recipients(cms.RecipientInfos.load(raw))
    except (ValueError, TypeError, KeyError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{what} has unreadable RecipientInfos ({problem})") from exc


def _read_content_algorithm(
    reader: BerReader, parts: Iterator[Tlv], head: EnvelopeHead, what: str, *, parse_cipher: bool
) -> None:
    """Read the inner content type and the content-encryption AlgorithmIdentifier of the
    EncryptedContentInfo into ``head`` (the cipher too, checked, with ``parse_cipher``)."""
    first = reader.next_universal(parts, TAG_OID, "the encrypted content type")
    reader.read_content(first, max_size=256)  # the inner content type (id-data, in S/MIME)
    alg = reader.next_universal(parts, TAG_SEQUENCE, "the content-encryption AlgorithmIdentifier")
    head.content_algorithm_der = reader.read_element(alg, max_size=4096)
    try:
        algorithm = algos.EncryptionAlgorithm.load(head.content_algorithm_der)
        head.content_algorithm_oid = str(algorithm["algorithm"].dotted)  # forces the parse
    except (ValueError, TypeError) as exc:
        raise DataError(f"{what} has an unreadable content-encryption algorithm") from exc
    if parse_cipher:
        from smimecli.cms.algorithms import parse_algorithm_identifier

        try:
            head.cipher = parse_algorithm_identifier(head.content_algorithm_der)
        except DataError as exc:
            raise DataError(f"{what}: {exc}") from exc
        if head.is_auth_enveloped != head.cipher.cipher.authenticated:
            raise DataError(
                f"{what} pairs {head.content_type_name} with the cipher {head.cipher.name}"
            )


# --- content decryption -----------------------------------------------------------------------


class _KeyRejectedError(Exception):
    """Internal: this content key does not fit (size, padding, tag)."""


def _decryptor(head: EnvelopeHead, cek: bytes, iv: bytes | None = None) -> Any:
    from smimecli.cms.algorithms import content_decryptor

    algorithm = head.cipher if iv is None else dataclasses.replace(head.cipher, iv=iv)
    try:
        # The cipher was parsed by read_head, so a DataError here is about the key's size.
        return content_decryptor(algorithm, cek)
    except (DataError, ValueError) as exc:
        raise _KeyRejectedError() from exc


def _cbc_pass(head: EnvelopeHead, cek: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decrypt CBC content; raise _KeyRejectedError on a bad padding (after the output)."""
    decryptor = _decryptor(head, cek)
    for chunk in chunks:
        out = decryptor.update(chunk)
        if out:
            yield out
    try:
        tail = decryptor.finalize()
    except (DataError, ValueError) as exc:
        raise _KeyRejectedError() from exc
    if tail:
        yield tail


def _cbc_probe(head: EnvelopeHead, cek: bytes, first: bytes, last: bytes, whole: bool) -> bytes:
    """What a whole CBC pass with ``cek`` would tell, from two small pieces of the content:
    its first plaintext bytes (up to BINARY_SAMPLE), from ``first`` (``whole``: all of the
    content); whether its padding is right, from ``last`` (the last two ciphertext blocks,
    or the only one). Raises _KeyRejectedError on a bad padding, as the whole pass would."""
    size = head.cipher.cipher.block_size
    iv = head.cipher.iv if len(last) == size else last[:size]
    tail = _decryptor(head, cek, iv)
    tail.update(last[-size:])
    try:
        tail.finalize()
    except (DataError, ValueError) as exc:
        raise _KeyRejectedError() from exc
    start = _decryptor(head, cek)
    plain = bytes(start.update(first))
    if whole:
        try:
            plain += start.finalize()
        except (DataError, ValueError) as exc:
            raise _KeyRejectedError() from exc
    return plain[:BINARY_SAMPLE]


def _gcm_looks_binary(head: EnvelopeHead, cek: bytes, first: bytes) -> bool:
    """Whether the first plaintext bytes under ``cek`` look binary: AES-GCM is counter
    mode, its first block counter being the 96-bit nonce then 2 (NIST SP 800-38D 7.2)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(head.cipher.iv) != 12 or len(cek) not in (16, 24, 32):
        return False
    ctr = Cipher(algorithms.AES(cek), modes.CTR(head.cipher.iv + b"\0\0\0\2")).decryptor()
    return looks_binary(ctr.update(first[:BINARY_SAMPLE]))


def _gcm_pass(
    head: EnvelopeHead, cek: bytes, ciphertext: IO[bytes], aad: bytes, tag: bytes
) -> IO[bytes]:
    """Decrypt and verify AES-GCM content into a spool; _KeyRejectedError on a bad tag."""
    decryptor = _decryptor(head, cek)
    if aad:
        # RFC 5083 2.2: the AAD is the DER encoding of authAttrs with a SET OF tag.
        decryptor.authenticate_additional_data(aad)
    plain = spool()
    ciphertext.seek(0)
    for chunk in read_chunks(ciphertext, _CHUNK):
        plain.write(decryptor.update(chunk))
    try:
        plain.write(decryptor.finalize_with_tag(tag))
    except (DataError, ValueError) as exc:
        plain.close()
        raise _KeyRejectedError() from exc
    plain.seek(0)
    return plain


def _content_chunks(reader: BerReader, head: EnvelopeHead, what: str) -> Iterator[bytes]:
    if head.content_tlv is None:
        raise DataError(
            f"{what} carries no encrypted content (detached EnvelopedData is not supported)"
        )
    return reader.iter_octets(head.content_tlv)


def _finish(reader: BerReader, head: EnvelopeHead, what: str) -> tuple[bytes, bytes]:
    """Read what follows the content; return (AAD, tag) for AuthEnvelopedData."""
    outer_fields, explicit_fields, fields, parts = head.levels
    if next(parts, None) is not None:
        raise reader.error("unexpected element after the encrypted content")
    aad = b""
    tag = b""
    for tlv in fields:
        if head.is_auth_enveloped and tlv.is_context(1) and not tag:
            raw = reader.read_element(tlv)
            try:
                # RFC 5083 2.2: DER of authAttrs with the SET OF tag instead of [1].
                aad = cms.CMSAttributes.load(b"\x31" + raw[1:]).dump(force=True)
            except (ValueError, TypeError) as exc:
                raise DataError(f"{what} has unreadable authenticated attributes") from exc
        elif head.is_auth_enveloped and tlv.is_universal(TAG_OCTET_STRING) and not tag:
            tag = reader.read_octets(tlv, max_size=64)
        else:
            reader.skip(tlv)  # unprotectedAttrs [1] / unauthAttrs [2]
    # Close [0] EXPLICIT and the ContentInfo (EOC or end of length): nothing may follow.
    for level in (explicit_fields, outer_fields):
        if next(level, None) is not None:
            raise reader.error("unexpected element at the end of the ContentInfo")
    if head.is_auth_enveloped and not tag:
        raise DataError(f"{what}: the AuthEnvelopedData carries no authentication tag")
    return aad, tag


def decrypt_content(
    reader: BerReader,
    head: EnvelopeHead,
    identities: list[KeyIdentity],
    *,
    what: str = "the message",
    kek: bytes | None = None,
    kek_id: bytes | None = None,
) -> Iterator[bytes]:
    """Yield the decrypted content of the message whose head was read by :func:`read_head`.

    Args:
        identities: private keys to try, each with its certificate when known.
        kek: a key-encryption key for KEKRecipientInfo (RFC 5652 6.2.3).

    Raises:
        AuthError: no key opens the message, or its padding or tag is wrong.
        DataError: the structure is broken or uses an unsupported algorithm.
    """
    if head.cipher is None:
        raise DataError(f"{what}: the content cipher was not checked (read_head parse_cipher)")
    candidates = content_key_candidates(
        head.recipients, identities, key_length=head.key_length, kek=kek, kek_id=kek_id
    )
    if not candidates:
        raise no_key_error(what)
    chunks = _content_chunks(reader, head, what)
    if head.is_auth_enveloped:
        yield from _open_authenticated(reader, head, candidates, chunks, what)
        return
    if len(candidates) == 1:
        try:
            yield from _cbc_pass(head, candidates[0], chunks)
        except _KeyRejectedError:
            raise no_key_error(what) from None
        _finish(reader, head, what)
        return
    yield from _open_cbc_candidates(reader, head, candidates, chunks, what)


def _open_authenticated(
    reader: BerReader,
    head: EnvelopeHead,
    candidates: list[bytes],
    chunks: Iterator[bytes],
    what: str,
) -> Iterator[bytes]:
    """AES-GCM content: spool it, find the candidate key whose tag verifies, and only then
    yield the plaintext."""
    with spool() as ciphertext:
        ciphertext.writelines(chunks)
        aad, tag = _finish(reader, head, what)
        if len(tag) != (want := head.cipher.tag_length):
            raise DataError(f"{what}: its AES-GCM tag has {len(tag)} bytes, not {want}: refused")
        plain = None
        if len(candidates) > 1:
            # Only the right key passes the tag (each try is a whole pass): keys whose
            # first bytes look like text go first, so a wrong key rarely costs a pass.
            ciphertext.seek(0)
            first = ciphertext.read(BINARY_SAMPLE)
            candidates.sort(key=lambda cek: _gcm_looks_binary(head, cek, first))
        for cek in candidates:
            try:
                plain = _gcm_pass(head, cek, ciphertext, aad, tag)
                break
            except _KeyRejectedError:
                continue
    if plain is None:
        raise no_key_error(what)
    with plain:
        yield from read_chunks(plain, _CHUNK)


def _open_cbc_candidates(
    reader: BerReader,
    head: EnvelopeHead,
    candidates: list[bytes],
    chunks: Iterator[bytes],
    what: str,
) -> Iterator[bytes]:
    """CBC content with several candidate content keys: spool it, judge each key from two
    small pieces, and decrypt the whole with the best one."""
    with spool() as ciphertext:
        ciphertext.writelines(chunks)
        _finish(reader, head, what)
        # Several candidate keys (a key without its certificate): a wrong one still passes
        # the CBC padding check once in about 256 tries, so a key whose plaintext starts
        # like binary data is kept only as a fallback while another one may give text.
        # Each key is judged from the first and the last blocks only (the padding is in
        # the last block, decrypted with the one before it as IV), so the content is read
        # once more in all, whatever the number of recipients.
        size = head.cipher.cipher.block_size
        total = ciphertext.tell()
        if total < size or total % size:
            raise no_key_error(what)  # no key can give a right padding
        ciphertext.seek(0)
        first = ciphertext.read(BINARY_SAMPLE + size)
        ciphertext.seek(max(0, total - 2 * size))
        last = ciphertext.read(2 * size)
        fallback = None
        for cek in candidates:
            try:
                head_bytes = _cbc_probe(head, cek, first, last, len(first) == total)
            except _KeyRejectedError:
                continue
            if not looks_binary(head_bytes):
                fallback = cek
                break
            if fallback is None:
                fallback = cek
        if fallback is not None:
            ciphertext.seek(0)
            yield from _cbc_pass(head, fallback, read_chunks(ciphertext, _CHUNK))
            return
    raise no_key_error(what)

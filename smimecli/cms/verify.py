"""Checking a CMS SignedData (RFC 5652 section 5.4 and 5.6), without trust decisions.

What is checked, per SignerInfo: the messageDigest attribute against the content, the
signature over the signed attributes re-encoded as a DER ``SET OF`` (tag 0x31, not the
``[0] IMPLICIT`` tag they are sent with: RFC 5652 section 5.4), the contentType attribute
against the eContentType, and the ESS signingCertificate(V2) hash against the signer's
certificate (RFC 5035 section 5.4). Whether the signer is trusted is a separate question
(:mod:`smimecli.cms.trust`).

A structure that cannot be parsed raises :class:`DataError` (65); a signature that does not
match is a *problem* in the result, not an exception, so the caller can report it.

Memory: the SignedData itself is parsed whole by asn1crypto (DER or BER, indefinite lengths
included). A detached content is hashed as a stream; an encapsulated (opaque) content is held
in memory, so opaque messages are limited to :data:`MAX_SIGNED_DATA` bytes. A DER one can be
taken out first (:func:`split_encapsulated`) and checked like a detached content, so that
asn1crypto does not copy it at each level it parses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from smimecli.cms.encapsulated import split_encapsulated
from smimecli.cms.sigalgs import WEAK_DIGESTS, Digest, describe, digest_by_name, verify
from smimecli.errors import DataError

__all__ = [
    "MAX_SIGNED_DATA",
    "MAX_SIGNERS",
    "SignatureCheck",
    "SignerCheck",
    "load_signed_data",
    "split_encapsulated",
    "verify_signed_data",
]

MAX_SIGNED_DATA = 64 << 20  # an opaque signed message is parsed in memory, up to this size
# Signatures checked per SignedData: S/MIME mail has one (a few when re-signed); a hostile
# message must not make verify do a thousand public-key operations and report them all.
MAX_SIGNERS = 16
# RFC 5652 section 11: these signed attributes occur once, with exactly one value.
_SINGLE_ATTRIBUTES = ("content_type", "message_digest", "signing_time")
FUTURE_SKEW = dt.timedelta(minutes=10)  # clocks drift; beyond this a signingTime is suspect
_CHUNK = 1 << 20


@dataclass
class SignerCheck:
    """What one SignerInfo says and whether it holds.

    Attributes:
        signer: the signer's certificate, when the message (or the caller) holds it.
        signing_time: the signingTime attribute (UTC), if any.
        digest_algorithm: e.g. ``sha256``.
        signature_algorithm: e.g. ``rsassa_pkcs1v15-sha256``, ``rsassa_pss-sha256``,
            ``sha256_ecdsa``.
        capabilities: the SMIMECapabilities, strongest first (names or dotted OIDs).
        problems: why the signature does not hold; empty when it does.
    """

    signer: x509.Certificate | None
    signing_time: dt.datetime | None
    digest_algorithm: str
    signature_algorithm: str
    capabilities: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """True when the signature and the digest hold (trust is not judged here)."""
        return not self.problems


@dataclass
class SignatureCheck:
    """The result of :func:`verify_signed_data`.

    Attributes:
        signers: one check per SignerInfo, in order.
        certificates: every certificate the SignedData carries.
        content: the encapsulated content of an opaque signature (None when detached).
    """

    signers: list[SignerCheck]
    certificates: list[x509.Certificate]
    content: bytes | None = None

    @property
    def valid(self) -> bool:
        """True when there is a signer and every signer's signature holds."""
        return bool(self.signers) and all(s.valid for s in self.signers)

    @property
    def signer(self) -> SignerCheck:
        """The first signer (S/MIME messages have one)."""
        return self.signers[0]

    @property
    def problems(self) -> list[str]:
        """Every signer's problems, in order, each said once."""
        return list(dict.fromkeys(p for s in self.signers for p in s.problems))


def load_signed_data(data: bytes, what: str = "the signature") -> Any:
    """Parse a DER or BER ContentInfo holding a SignedData (asn1crypto ``SignedData``).

    Raises:
        DataError: not a ContentInfo, not signed-data, or damaged.
    """
    from asn1crypto import cms, tsp

    assert tsp.SigningCertificateV2  # imported to register the ESS attributes (RFC 5035)
    if len(data) > MAX_SIGNED_DATA:
        raise DataError(f"{what}: signed-data larger than {MAX_SIGNED_DATA >> 20} MiB")
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            raise DataError(f"{what}: CMS content type is {info['content_type'].native}")
        signed = info["content"]
        # Parse the framing now, so damage is found here; attributes are read one by one.
        signed["encap_content_info"]["content_type"].native  # noqa: B018
        for si in signed["signer_infos"]:
            si["sid"].native  # noqa: B018
            si["signature"].native  # noqa: B018
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise DataError(f"{what}: not a valid CMS signed-data structure ({_short(exc)})") from exc
    count = len(signed["signer_infos"])
    if not count:
        raise DataError(f"{what}: the signed-data has no signer")
    if count > MAX_SIGNERS:
        raise DataError(
            f"{what}: the signed-data has {count} signers, more than the {MAX_SIGNERS} "
            "that are checked: not verified"
        )
    return signed


def _certificates(signed: Any, what: str) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for choice in signed["certificates"] or []:
        if choice.name != "certificate":
            continue  # attribute and other certificate formats (RFC 5652 10.2.2) are unused
        try:
            out.append(x509.load_der_x509_certificate(choice.chosen.dump()))
        except ValueError as exc:
            raise DataError(
                f"{what}: a certificate in the signature is damaged ({_short(exc)})"
            ) from exc
    return out


def find_signer(sid: Any, certs: Iterable[x509.Certificate]) -> x509.Certificate | None:
    """The certificate a SignerIdentifier names (issuer and serial, or SKI)."""
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding

    for cert in certs:
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if cert.serial_number != ias["serial_number"].native:
                continue
            parsed = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
            if parsed.issuer == ias["issuer"]:
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == sid.chosen.native:
                return cert
    return None


def _chunks(content: bytes | BinaryIO | Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        return (bytes(content),)
    if hasattr(content, "read"):
        stream: Any = content
        return iter(lambda: bytes(stream.read(_CHUNK)), b"")
    return content


def _hash_all(chunks: Iterable[bytes], digests: list[Digest]) -> dict[str, bytes]:
    """Each digest of the content, in one pass over it."""
    hashers = {d.name: hashes.Hash(d.new()) for d in digests}
    for chunk in chunks:
        for hasher in hashers.values():
            hasher.update(chunk)
    return {name: h.finalize() for name, h in hashers.items()}


def verify_signed_data(
    data: bytes | Any,
    content: bytes | BinaryIO | Iterable[bytes] | None = None,
    *,
    extra_certificates: Iterable[x509.Certificate] = (),
    now: dt.datetime | None = None,
    what: str = "the signature",
) -> SignatureCheck:
    """Check every signature of a SignedData.

    Args:
        data: the DER/BER ContentInfo, or a SignedData from :func:`load_signed_data`.
        content: the detached content (canonical bytes, a stream, or chunks); None for an
            opaque signature, whose encapsulated content is used.
        extra_certificates: more certificates to find the signer among (a store).
        now: the time to judge a signingTime in the future against (default: now).

    Raises:
        DataError: the structure is damaged, or there is no content to check against.
    """
    signed = load_signed_data(bytes(data), what) if isinstance(data, bytes | bytearray) else data
    certs = _certificates(signed, what)
    try:
        econtent = signed["encap_content_info"]["content"].native
        econtent_type = signed["encap_content_info"]["content_type"].dotted
        infos = list(signed["signer_infos"])
        digests = {digest_by_name(si["digest_algorithm"]["algorithm"].native).name for si in infos}
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise DataError(f"{what}: not a valid CMS signed-data structure ({_short(exc)})") from exc
    if content is None and econtent is None:
        raise DataError(f"{what}: a detached signature, but no signed content was given")
    source = content if content is not None else econtent
    computed = _hash_all(_chunks(source), [digest_by_name(n) for n in sorted(digests)])
    extra = _econtent_differs(econtent, content)
    pool = [*certs, *extra_certificates]
    checks = []
    for si in infos:
        check = _check_signer(si, computed, econtent_type, pool, now, what)
        check.problems[:0] = extra
        checks.append(check)
    return SignatureCheck(checks, certs, econtent if content is None else None)


def _econtent_differs(econtent: bytes | None, content: Any) -> list[str]:
    """A detached part next to an encapsulated content that says something else."""
    if econtent is None or content is None:
        return []
    if isinstance(content, bytes | bytearray) and bytes(content) == econtent:
        return []
    return ["the signature carries its own copy of the content, besides the signed part"]


def _signed_attrs_der(si: Any) -> bytes:
    """The signed attributes as the DER SET OF that was signed (RFC 5652 section 5.4)."""
    attrs = si["signed_attrs"]
    raw = attrs.dump()
    if len(raw) > 1 and raw[1] == 0x80:  # BER indefinite length: re-encode as DER
        raw = attrs.dump(force=True)
    return b"\x31" + bytes(raw[1:])


def _short(exc: Exception) -> str:
    """The first clause of an asn1crypto error (the rest is its parse stack)."""
    return str(exc).split(";")[0].split("\n")[0][:160]


def _attr(attrs: Any, name: str) -> Any:
    """The first value of the signed attribute ``name``; None when absent. An attribute
    whose value asn1crypto cannot parse counts as absent unless it is one the check needs."""
    for attr in attrs:
        if attr["type"].native != name:
            continue
        try:
            value = attr["values"][0]
            value.native  # noqa: B018 - parse now
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            if name in ("message_digest", "content_type"):
                raise
            del exc
            return None
        return value
    return None


def _check_signer(
    si: Any,
    computed: dict[str, bytes],
    econtent_type: str,
    pool: list[x509.Certificate],
    now: dt.datetime | None,
    what: str,
) -> SignerCheck:
    try:
        digest = digest_by_name(si["digest_algorithm"]["algorithm"].native)
        cert = find_signer(si["sid"], pool)
        check = SignerCheck(cert, None, digest.name, describe(si["signature_algorithm"], digest))
        if digest.name in WEAK_DIGESTS:
            check.problems.append(f"the digest algorithm {digest.name} is too weak to trust")
        attrs = si["signed_attrs"]
        if len(attrs):
            _check_attributes(check, attrs, computed[digest.name], econtent_type, now)
            signed_bytes, prehashed = _signed_attrs_der(si), False
        else:
            signed_bytes, prehashed = computed[digest.name], True
        if cert is None:
            check.problems.append("the signer's certificate is not in the message")
            return check
        signature = si["signature"].native
        alg = si["signature_algorithm"]
        if not verify(cert.public_key(), alg, digest, signed_bytes, signature, prehashed=prehashed):
            check.problems.append("the signature does not match: the message was changed")
        return check
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from exc
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataError(f"{what}: a SignerInfo is damaged ({_short(exc)})") from exc


def _check_attributes(
    check: SignerCheck, attrs: Any, digest: bytes, econtent_type: str, now: dt.datetime | None
) -> None:
    """messageDigest, contentType, signingTime, SMIMECapabilities, signingCertificate(V2)."""
    for name in _SINGLE_ATTRIBUTES:
        values = [len(a["values"]) for a in attrs if a["type"].native == name]
        if len(values) > 1 or (values and values[0] != 1):
            check.problems.append(
                f"the signed attributes must hold one {_ATTRIBUTE_NAMES[name]} with one "
                f"value, not {sum(values)} (RFC 5652 section 11)"
            )
    message_digest = _attr(attrs, "message_digest")
    if message_digest is None:
        check.problems.append("the signature has no messageDigest attribute")
    elif message_digest.native != digest:
        check.problems.append("the message digest does not match: the content was changed")
    content_type = _attr(attrs, "content_type")
    if content_type is None or content_type.dotted != econtent_type:
        check.problems.append("the contentType attribute does not name the signed content")
    signing_time = _attr(attrs, "signing_time")
    if signing_time is not None:
        check.signing_time = signing_time.native
        limit = (now or dt.datetime.now(dt.UTC)) + FUTURE_SKEW
        if check.signing_time is not None and check.signing_time > limit:
            check.problems.append(
                f"the signing time {check.signing_time:%Y-%m-%d %H:%M} is in the future"
            )
    capabilities = _attr(attrs, "smime_capabilities")
    if capabilities is not None:
        check.capabilities = [str(c["capability_id"].native) for c in capabilities]
    _check_ess(check, attrs)


_ATTRIBUTE_NAMES = {
    "content_type": "contentType",
    "message_digest": "messageDigest",
    "signing_time": "signingTime",
}


def _check_ess(check: SignerCheck, attrs: Any) -> None:
    """ESS signingCertificate / signingCertificateV2: the first ESSCertID must hash the
    signer's certificate (RFC 5035 section 5.4)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    for name, default in (("signing_certificate_v2", "sha256"), ("signing_certificate", "sha1")):
        value = _attr(attrs, name)
        if value is None or check.signer is None or not len(value["certs"]):
            continue
        first = value["certs"][0]
        hash_name = first["hash_algorithm"]["algorithm"].native if name.endswith("v2") else default
        hasher = hashes.Hash(digest_by_name(hash_name).new())
        hasher.update(check.signer.public_bytes(Encoding.DER))
        if hasher.finalize() != first["cert_hash"].native:
            check.problems.append("the ESS signing certificate attribute names another certificate")

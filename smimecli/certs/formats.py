"""Certificate file formats, detected by content, not by file name.

Supported: PEM (certificates, PKCS#7 and private keys, many per file), DER certificates,
PKCS#7 certs-only (.p7b/.p7c, DER or PEM, also the PKCS#7 form of .sst), PKCS#12
(.pfx/.p12, modern and legacy, with friendly names), Microsoft serialized stores (.sst) and
signed mail (.eml whose S/MIME signature carries certificates).

A container whose structure is broken raises :class:`DataError` (65); a certificate inside
an otherwise good container that cannot be parsed is skipped, counted in
:attr:`CertList.skipped` (``certs import --strict`` turns that into 65) and reported as a
``skipped-certificate`` :class:`~smimecli.notices.Notice` in :attr:`CertList.notices`; a
private key without its certificate is ignored with a ``key-without-certificate`` notice.
Nothing is logged or printed: the caller shows the notices.
A missing or wrong PKCS#12 password raises :class:`AuthError` (77).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning

from smimecli.certs import names, sst
from smimecli.certs.pem import (
    CERT_LABELS,
    KEY_LABELS,
    PKCS7_LABELS,
    pem_blocks,
    pem_body,
    strip_trust,
)
from smimecli.cms import der
from smimecli.errors import DataError
from smimecli.files import read_input
from smimecli.notices import Notice

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | dsa.DSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_BASE64_ONLY = re.compile(rb"^[A-Za-z0-9+/=\s]+$")


@dataclass
class CertEntry:
    """A certificate found in a file, with its private key and friendly name if present."""

    cert: x509.Certificate
    key: PrivateKey | None = None
    friendly_name: str | None = None
    # True for certificates that came as the CA chain of a .pfx (they go to `ca`).
    chain: bool = False

    @functools.cached_property
    def thumbprint(self) -> str:
        """SHA-1 thumbprint, upper-case hex."""
        return names.thumbprint(self.cert)


class CertList(list[CertEntry]):
    """The certificates of one file, the messages of the ones that were skipped, and the
    notices for a person (``skipped-certificate``, ``key-without-certificate``)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[str] = []
        self.notices: list[Notice] = []

    def skip(self, message: str) -> None:
        """Record one certificate that could not be parsed (with its notice)."""
        self.skipped.append(message)
        self.notices.append(Notice("skipped-certificate", message))

    def lone_key(self, source: str) -> None:
        """Record a private key that came without its certificate (it is ignored)."""
        text = f"private key without its certificate{_where(source)} ignored"
        self.notices.append(Notice("key-without-certificate", text))


def load_der_certificate(der: bytes) -> x509.Certificate:
    """Parse one DER certificate; old roots with a non-positive serial are accepted quietly.

    Raises ValueError when the bytes are not an X.509 certificate.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(der)


def is_ca(cert: x509.Certificate) -> bool:
    """Whether the certificate has basicConstraints cA = TRUE (RFC 5280 4.2.1.9)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _where(source: str) -> str:
    return f" in {source}" if source else ""


# --- DER shape detection ------------------------------------------------------------------


def _der_kind(data: bytes) -> str | None:
    """Classify a DER/BER blob: 'cert', 'pkcs7', 'pkcs12', or None."""
    try:
        tag, start, _ = der.read_header(data, 0)
        if tag != 0x30:
            return None
        child, _, _ = der.read_header(data, start)
    except ValueError:
        return None
    if child == 0x30:
        return "cert"  # Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, ... }
    if child == 0x02:
        return "pkcs12"  # PFX ::= SEQUENCE { version INTEGER (3), ... } (RFC 7292 4)
    if child == 0x06:
        return "pkcs7"  # ContentInfo ::= SEQUENCE { contentType OID, ... } (RFC 5652 3)
    return None


def holds_only_private_key(data: bytes) -> bool:
    """Whether a file holds a private key and no certificate (a key given as a certificate).

    PEM: key blocks and no certificate or PKCS#7 block. DER: a PKCS#8 (RFC 5958), encrypted
    PKCS#8 or traditional RSA/EC key structure; a PKCS#12 file holds certificates too.
    """
    if b"-----BEGIN " in data[:65536]:
        labels = {block.label for block in pem_blocks(data)}
        return bool(labels & KEY_LABELS) and not labels & (CERT_LABELS | PKCS7_LABELS)
    if _der_kind(data) not in ("pkcs12", "cert"):
        return False
    from asn1crypto import keys

    specs = (keys.PrivateKeyInfo, keys.EncryptedPrivateKeyInfo, keys.RSAPrivateKey)
    for spec in specs:
        try:
            spec.load(data, strict=True).native  # noqa: B018 - parses every field
        except (ValueError, TypeError, KeyError):
            continue
        return True
    return False


# --- individual formats ---------------------------------------------------------------------


def _from_pkcs7(data: bytes, source: str, out: CertList) -> None:
    """Certificates of a PKCS#7/CMS SignedData (certs-only .p7b or a signature)."""
    from asn1crypto import cms

    try:
        info = cms.ContentInfo.load(data)
        content_type = info["content_type"].dotted
        if content_type != _OID_SIGNED_DATA:
            raise DataError(
                f"PKCS#7 content{_where(source)} is {content_type}, not signed data "
                "with certificates"
            )
        signed = info["content"]
        certificates = signed["certificates"]
        blobs = [] if certificates.native is None else [c.dump() for c in certificates]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"corrupt PKCS#7 structure{_where(source)}: {_short(exc)}") from exc
    for index, blob in enumerate(blobs, 1):
        try:
            out.append(CertEntry(load_der_certificate(blob)))
        except ValueError as exc:
            out.skip(f"skipped certificate {index}{_where(source)}: {_short(exc)}")


def _from_sst(data: bytes, source: str, out: CertList) -> None:
    for index, element in enumerate(sst.read_sst(data, source=source), 1):
        try:
            out.append(CertEntry(load_der_certificate(element.der), None, element.friendly_name))
        except ValueError as exc:
            label = f" ({element.friendly_name})" if element.friendly_name else ""
            out.skip(
                f"skipped certificate {index}{label} at byte {element.offset}"
                f"{_where(source)}: not a valid X.509 certificate: {_short(exc)}"
            )


# What the ASN.1 parser's error kinds (``ParseError { kind: ... }``) mean, in plain words.
_PARSE_ERRORS = {
    "ShortData": "its DER encoding is cut short",
    "UnexpectedTag": "its DER encoding has a field of the wrong type where another belongs",
    "ExtraData": "extra bytes follow its DER encoding",
    "InvalidLength": "its DER encoding has an invalid length",
    "InvalidValue": "a field of its DER encoding holds an invalid value",
    "InvalidTag": "its DER encoding has an invalid tag",
    "IntegerOverflow": "a number in it is too large",
    "EncodedDefault": "its DER encoding spells out a default value (not DER)",
    "InvalidSetOrdering": "its DER encoding has a SET out of order (not DER)",
    "OidTooLong": "an object identifier in it is too long",
    "UnknownDefinedBy": "an algorithm in it is unknown",
}


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    found = re.search(r"ParseError \{ kind: (\w+)", text)
    if found:  # parser internals help nobody: say what is wrong with the certificate
        return _PARSE_ERRORS.get(found.group(1), "its DER encoding is damaged")
    return text if len(text) <= 120 else text[:117] + "..."


def _check_pfx_structure(data: bytes, source: str) -> None:
    """Parse the PFX outer structure, its MAC included (RFC 7292 section 4)."""
    from asn1crypto import pkcs12 as a_pkcs12

    try:
        pfx = a_pkcs12.Pfx.load(data)
        version = pfx["version"].native
        pfx["auth_safe"]["content_type"].native  # noqa: B018 - forces parsing
        pfx["mac_data"].native  # noqa: B018 - forces parsing
    except Exception as exc:
        raise DataError(f"corrupt PKCS#12 file{_where(source)}: {_short(exc)}") from exc
    if version not in (3, "v3"):
        raise DataError(f"unsupported PKCS#12 version {version}{_where(source)}")


def _from_pkcs12(data: bytes, password: bytes | None, source: str, out: CertList) -> None:
    from smimecli.certs.keys import open_pkcs12

    _check_pfx_structure(data, source)
    bundle = open_pkcs12(data, password, source or "the PKCS#12 file")
    key = bundle.key
    if bundle.cert is not None:
        out.append(CertEntry(bundle.cert.certificate, key, _friendly(bundle.cert.friendly_name)))
    elif key is not None:
        out.lone_key(source)
    for extra in bundle.additional_certs:
        extra_cert = extra.certificate
        name = _friendly(extra.friendly_name)
        out.append(CertEntry(extra_cert, None, name, chain=is_ca(extra_cert)))


def _friendly(raw: bytes | None) -> str | None:
    if not raw:
        return None
    return raw.decode("utf-8", "replace")


def _from_pem(data: bytes, password: bytes | None, source: str, out: CertList) -> None:
    keys: list[PrivateKey] = []
    found_any = False
    for index, block in enumerate(pem_blocks(data), 1):
        found_any = True
        label = block.label
        if label in CERT_LABELS:
            try:
                der = pem_body(block.body)
            except (binascii.Error, ValueError) as exc:
                out.skip(f"skipped PEM block {index}{_where(source)}: bad base64 ({_short(exc)})")
                continue
            if label == b"TRUSTED CERTIFICATE":
                der = strip_trust(der)
            try:
                out.append(CertEntry(load_der_certificate(der)))
            except ValueError as exc:
                out.skip(f"skipped certificate {index}{_where(source)}: {_short(exc)}")
        elif label in PKCS7_LABELS:
            try:
                der = pem_body(block.body)
            except (binascii.Error, ValueError) as exc:
                raise DataError(f"corrupt PEM PKCS#7 block{_where(source)}: {_short(exc)}") from exc
            _from_pkcs7(der, source, out)
        elif label in KEY_LABELS:
            keys.append(_load_pem_key(block.whole, password, source))
    if not found_any:
        raise DataError(f"no PEM blocks{_where(source)}")
    _attach_keys(out, keys, source)


def _load_pem_key(block: bytes, password: bytes | None, source: str) -> PrivateKey:
    from smimecli.certs.keys import load_key_block  # key files only: not every run has one

    key = load_key_block("pem", block, password, f"the private key{_where(source)}")
    if not isinstance(key, PrivateKey):
        raise DataError(f"unsupported private key type{_where(source)}")
    return key


def _attach_keys(out: CertList, keys: list[PrivateKey], source: str) -> None:
    """Pair PEM private keys with the certificates whose public key they match."""
    if not keys:
        return
    from smimecli.certs.keys import public_key_der

    by_public = {public_key_der(key.public_key()): key for key in keys}
    used: set[bytes] = set()
    for entry in out:
        try:
            spki = public_key_der(entry.cert.public_key())
        except (ValueError, TypeError):
            continue
        if spki in by_public:
            entry.key = by_public[spki]
            used.add(spki)
    for spki in by_public:
        if spki not in used:
            out.lone_key(source)


def _looks_like_mail(data: bytes) -> bool:
    head = data[:16384].lower()
    return b"content-type:" in head and (
        b"pkcs7-signature" in head or b"pkcs7-mime" in head or b"multipart/signed" in head
    )


def _from_mail(data: bytes, source: str, out: CertList) -> None:
    """Mail: a signed message gives its verified signer and that signer's issuers
    (:func:`smimecli.certs.harvest.harvest_mail`); otherwise the certificates of its
    ``certs-only`` parts (RFC 8551 3.6). A signature nested deeper (a forwarded message)
    is not verified here, so its certificates are not taken."""
    import email
    import email.policy

    from smimecli.certs.harvest import harvest_mail, is_signed_mail

    if is_signed_mail(data):
        out.extend(harvest_mail(data, source or "the message").entries)
        return
    try:
        # The email package recurses once per nested multipart: a hostile mail thousands
        # of levels deep is bad input (65), not a crash.
        parts = list(email.message_from_bytes(data, policy=email.policy.compat32).walk())
    except RecursionError:
        raise DataError(f"mail nests its parts too deeply to read{_where(source)}") from None
    found = nested = False
    for part in parts:
        ctype = part.get_content_type()
        if ctype not in _PKCS7_PARTS:
            continue
        smime_type = str(part.get_param("smime-type") or "").lower()
        if smime_type != "certs-only":
            nested = nested or smime_type in ("", "signed-data")
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        found = True
        _from_pkcs7(payload, source, out)
    if not found and nested:
        raise DataError(
            f"the S/MIME signature is inside another message (a forward?){_where(source)}: "
            "certificates are taken only from a verified signature; save the signed "
            "message itself and import that"
        )
    if not found:
        raise DataError(f"no S/MIME signature with certificates{_where(source)}")


_PKCS7_PARTS = (
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
    "application/pkcs7-mime",
    "application/x-pkcs7-mime",
)


# --- entry points -------------------------------------------------------------------------


def load_certificates(data: bytes, *, password: bytes | None = None, source: str = "") -> CertList:
    """Load every certificate (and private key) a file holds, whatever its format.

    Args:
        data: the file content.
        password: for PKCS#12 and encrypted PEM keys.
        source: the file name, used in messages.

    Returns:
        The entries found; ``.skipped`` lists certificates that could not be parsed.
    """
    out = CertList()
    if not data.strip():
        raise DataError(f"{source or 'input'} is empty")
    if sst.is_sst(data):
        _from_sst(data, source, out)
        return out
    kind = _der_kind(data)
    if kind == "cert":
        try:
            out.append(CertEntry(load_der_certificate(data)))
        except ValueError as exc:
            raise DataError(
                f"{source or 'input'} is not a valid DER certificate: {_short(exc)}"
            ) from exc
        return out
    if kind == "pkcs12":
        _from_pkcs12(data, password, source, out)
        return out
    if kind == "pkcs7":
        _from_pkcs7(data, source, out)
        return out
    if _looks_like_mail(data):
        _from_mail(data, source, out)
        return out
    if b"-----BEGIN " in data:
        _from_pem(data, password, source, out)
        return out
    if _BASE64_ONLY.match(data[:65536]):
        # Base64 DER without PEM armour (what "Base-64 encoded X.509" sometimes means).
        try:
            decoded = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if decoded and _der_kind(decoded):
            return load_certificates(decoded, password=password, source=source)
    raise DataError(
        f"{source or 'input'} is not a certificate file this tool reads "
        "(PEM, DER, PKCS#7, PKCS#12, .sst or signed mail)"
    )


def load_certificate_file(path: str | Path, password: bytes | None = None) -> CertList:
    """Read a file (66 when missing) and load its certificates (see load_certificates)."""
    return load_certificates(read_input(path), password=password, source=str(path))

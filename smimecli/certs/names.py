"""How certificates are named to users: thumbprints, e-mail addresses, subjects.

Windows shows a certificate by its SHA-1 thumbprint in upper-case hex and names subjects
with ``E=`` for emailAddress; smimecli does the same so that an administrator can paste
what certmgr.msc shows.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

# Windows' short names (certutil, New-SelfSignedCertificate) for RFC 4514 output.
_WINDOWS_ATTRS = {NameOID.EMAIL_ADDRESS: "E", NameOID.STATE_OR_PROVINCE_NAME: "S"}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence cryptography's warnings about old certificates (a 66-character CN, a
    negative serial): real roots have them, and the user can do nothing about it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def thumbprint(cert: x509.Certificate) -> str:
    """The SHA-1 thumbprint in upper-case hex, as Windows shows it."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def subject_key_identifier(cert: x509.Certificate) -> bytes:
    """The SKI extension value, or the RFC 5280 section 4.2.1.2 method 1 value when absent
    (SHA-1 of the subjectPublicKey BIT STRING), which is what Windows and OpenSSL compute.

    CMS recipients named by SKI (``encrypt --recipient-id ski``) carry this value, so the
    writer, the reader and the store's index must all compute it the same way.
    """
    try:
        return bytes(
            cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        )
    except (x509.ExtensionNotFound, ValueError):
        return bytes(x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest)


def display_name(name: x509.Name) -> str:
    """The name as Windows shows it: most specific first, ``", "`` between RDNs, Windows
    attribute names (``E=``, ``S=``), values escaped as RFC 4514 section 2.4 says."""
    try:
        with quiet():
            return ", ".join(rdn.rfc4514_string(_WINDOWS_ATTRS) for rdn in reversed(name.rdns))
    except ValueError:  # pragma: no cover - undecodable attribute values
        return "<unprintable name>"


def common_name(cert: x509.Certificate) -> str | None:
    """The subject's first commonName, or None."""
    try:
        with quiet():
            attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    for attr in attrs:
        value = attr.value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def emails(cert: x509.Certificate) -> list[str]:
    """The addresses a certificate names, lower-cased, without duplicates.

    RFC 8550 section 3: the address is in the subjectAltName rfc822Name, or, in older
    certificates, in the subject's emailAddress attribute.
    """
    with quiet():
        return _emails(cert)


def _emails(cert: x509.Certificate) -> list[str]:
    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        found.extend(str(v) for v in san.value.get_values_for_type(x509.RFC822Name))
    except (x509.ExtensionNotFound, ValueError):
        pass
    try:
        for attr in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
            value = attr.value
            found.append(value if isinstance(value, str) else value.decode("ascii", "replace"))
    except ValueError:
        pass
    result: list[str] = []
    for address in found:
        lowered = address.strip().lower()
        if lowered and lowered not in result:
            result.append(lowered)
    return result

"""How certificates are named to users: thumbprints, e-mail addresses, subjects.

Windows shows a certificate by its SHA-1 thumbprint in upper-case hex and names subjects
with ``E=`` for emailAddress; smimecli does the same so that an administrator can paste
what certmgr.msc shows.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

# How subjects show attribute types: Windows' short names (certutil, CertStrToName,
# New-SelfSignedCertificate), by dotted OID. Any other type shows as OID.n.n.n, which
# gen-root --subject reads back (smimecli.lab.subjects.parse_subject, which also takes
# these labels).
NAME_LABELS: dict[str, str] = {
    "1.2.840.113549.1.9.1": "E",  # emailAddress
    "2.5.4.3": "CN",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.7": "L",
    "2.5.4.8": "S",  # stateOrProvinceName (RFC 4514 says ST)
    "2.5.4.6": "C",
    "0.9.2342.19200300.100.1.25": "DC",
    "2.5.4.9": "STREET",
    "2.5.4.12": "T",  # title
    "2.5.4.42": "G",  # givenName
    "2.5.4.4": "SN",  # surname
    "2.5.4.43": "I",  # initials
    "2.5.4.5": "SERIALNUMBER",
    "2.5.4.17": "POSTALCODE",
    "0.9.2342.19200300.100.1.1": "UID",
}
UNREADABLE_NAME = "(unreadable name)"


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


def escape_value(value: str) -> str:
    """An attribute value escaped as RFC 4514 section 2.4 says (``Org\\, Inc.``)."""
    if not value:
        return value
    value = value.replace("\\", "\\\\")
    for special in '"+,;<>':
        value = value.replace(special, "\\" + special)
    value = value.replace("\0", "\\00")
    if value[0] in "# ":
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def format_rdns(rdns: Iterable[Iterable[tuple[str, Any]]]) -> str:
    """The one subject formatter: RDNs of (dotted OID, value) in encoded order, shown most
    specific first (``E=..., CN=..., O=Org\\, Inc., C=US``), ``", "`` between RDNs, ``+``
    inside a multi-valued one, Windows labels (:data:`NAME_LABELS`), RFC 4514 escaping.
    A value that is not text shows as ``#`` and its hex (RFC 4514 section 2.4)."""
    parts = []
    for rdn in reversed(list(rdns)):
        attributes = []
        for oid, value in rdn:
            label = NAME_LABELS.get(oid, f"OID.{oid}")
            if isinstance(value, bytes):
                text = "#" + value.hex()
            else:
                text = escape_value(value if isinstance(value, str) else str(value))
            attributes.append(f"{label}={text}")
        parts.append("+".join(attributes))
    return ", ".join(parts)


def display_name(name: x509.Name) -> str:
    """The name as Windows shows it (:func:`format_rdns`); ``certs list`` and every other
    command print subjects this way, and ``gen-root --subject`` reads it back."""
    try:
        with quiet():
            return format_rdns(
                [(attribute.oid.dotted_string, attribute.value) for attribute in rdn]
                for rdn in name.rdns
            )
    except ValueError:  # pragma: no cover - undecodable attribute values
        return UNREADABLE_NAME


def display_asn1_name(name: Any) -> str:
    """:func:`display_name` for an asn1crypto Name (read from a CMS message, unparsed)."""
    try:
        return format_rdns(
            [(attr["type"].dotted, attr["value"].native) for attr in rdn] for rdn in name.chosen
        )
    except (ValueError, TypeError, KeyError):  # parsed lazily: a damaged name fails only here
        return UNREADABLE_NAME


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

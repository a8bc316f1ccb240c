"""The named choices of smimecli's options and rules keys, and their defaults, in one place.

The Typer annotations of the commands (smimecli.cli), the rules file validator
(smimecli.rules.load), :class:`smimecli.cms.recipients.Recipient`, the CMS cipher table
(smimecli.cms.algorithms) and the certificate store all take their names from here, so a
choice is added or renamed once. This module imports only :mod:`enum`: every command, even
``smimecli --help``, imports it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "DEFAULT_CIPHER",
    "DEFAULT_KEY_TRANSPORT",
    "DEFAULT_MATCH",
    "DEFAULT_MISSING_CERT",
    "DEFAULT_OAEP_HASH",
    "DEFAULT_RECIPIENT_ID",
    "DEFAULT_STORE",
    "Cipher",
    "KeyTransport",
    "MatchMode",
    "MissingCertPolicy",
    "OaepHash",
    "RecipientId",
    "SourceKind",
    "StoreName",
    "names",
]


class Cipher(StrEnum):
    """Content ciphers for encrypting; each has an entry in smimecli.cms.algorithms."""

    aes128 = "aes128"
    aes192 = "aes192"
    aes256 = "aes256"
    des3 = "3des"
    rc2_128 = "rc2-128"
    rc2_64 = "rc2-64"
    rc2_40 = "rc2-40"
    aes128_gcm = "aes128-gcm"
    aes256_gcm = "aes256-gcm"


class KeyTransport(StrEnum):
    """RSA key transport."""

    rsa = "rsa"
    rsa_oaep = "rsa-oaep"


class OaepHash(StrEnum):
    """RSA-OAEP hash (also used for MGF1)."""

    sha1 = "sha1"
    sha256 = "sha256"
    sha384 = "sha384"
    sha512 = "sha512"


class RecipientId(StrEnum):
    """How a RecipientInfo names the recipient's certificate."""

    issuer_serial = "issuer-serial"
    ski = "ski"


class MissingCertPolicy(StrEnum):
    """What rules mode does with a recipient who has no usable certificate."""

    pass_ = "pass"
    reject = "reject"
    tempfail = "tempfail"


class MatchMode(StrEnum):
    """Which certificates a rule accepts for an address: its own, or any usable one."""

    email = "email"
    any = "any"


class SourceKind(StrEnum):
    """Where a rule's certificates come from."""

    store = "store"
    pfx = "pfx"
    sst = "sst"
    cer = "cer"
    dir = "dir"


class StoreName(StrEnum):
    """The named stores of the certificate store (as in Windows' certificate manager)."""

    my = "my"
    other = "other"
    root = "root"
    ca = "ca"


# Plain strings (not enum members), so that they print and compare as the names they are.
DEFAULT_CIPHER: str = Cipher.aes256.value
DEFAULT_KEY_TRANSPORT: str = KeyTransport.rsa.value
DEFAULT_OAEP_HASH: str = OaepHash.sha256.value
DEFAULT_RECIPIENT_ID: str = RecipientId.issuer_serial.value
DEFAULT_MISSING_CERT: str = MissingCertPolicy.pass_.value
DEFAULT_MATCH: str = MatchMode.email.value
DEFAULT_STORE: str = StoreName.other.value


def names(choice: type[StrEnum]) -> tuple[str, ...]:
    """The values of a choice as plain strings, in declaration order."""
    return tuple(member.value for member in choice)

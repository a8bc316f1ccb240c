"""What the lab commands issue (:class:`Issued`) and who signs it (:class:`Signer`), with
the extensions that name the issuer (authorityKeyIdentifier, CRL distribution point)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509

from smimecli.certs import names
from smimecli.certs.formats import is_ca
from smimecli.certs.keys import PrivateKey, cert_matches_key
from smimecli.errors import DataError
from smimecli.notices import Notice

if TYPE_CHECKING:
    from smimecli.certs.formats import CertEntry
    from smimecli.certs.store import Store

# --- results and signers ------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A new certificate with its private key and the CA certificates above it.

    ``key`` is None for a certificate issued for a CSR: its key stays with the requester.
    """

    cert: x509.Certificate
    key: PrivateKey | None
    chain: tuple[x509.Certificate, ...] = ()
    notices: tuple[Notice, ...] = ()

    @property
    def thumbprint(self) -> str:
        """The SHA-1 thumbprint in upper-case hex, as Windows shows it."""
        return names.thumbprint(self.cert)

    @property
    def subject(self) -> str:
        """The subject in the Windows order."""
        return names.display_name(self.cert.subject)


@dataclass(frozen=True)
class Signer:
    """A CA certificate with its private key, checked to be able to issue."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = field(default=())

    @classmethod
    def checked(
        cls,
        cert: x509.Certificate,
        key: object,
        chain: tuple[x509.Certificate, ...] = (),
        *,
        where: str = "the signer",
    ) -> Signer:
        """Return a Signer after checking that ``cert`` is a CA whose key is ``key``.

        Raises:
            DataError: not a CA, no usable private key, or a key of another certificate (65).
        """
        what = f"{where} ({names.display_name(cert.subject)})"
        if not is_ca(cert):
            raise DataError(f"{what} is not a CA certificate (basicConstraints CA:TRUE missing)")
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            raise DataError(f"{what} may not sign certificates (keyUsage lacks keyCertSign)")
        if key is None:
            raise DataError(f"{what} has no private key; give a .pfx with the key")
        if not isinstance(key, PrivateKey):
            raise DataError(f"{what} has a {type(key).__name__}; only RSA and EC keys can sign")
        if not cert_matches_key(cert, key):
            raise DataError(f"{what}: the private key does not belong to the certificate")
        return cls(cert, key, chain)

    @classmethod
    def from_store(cls, store: Store, selector: str) -> Signer:
        """The CA of the store that ``selector`` names, with the key the store holds for it.

        Raises:
            DataError: see :meth:`checked`; the store's own errors (none or several found).
        """
        entry = store.select_one(selector)
        where = f"the signer {entry.thumbprint}"
        return cls.checked(entry.cert, store.private_key(entry.thumbprint), where=where)

    @classmethod
    def from_entries(cls, entries: Sequence[CertEntry], source: str) -> Signer:
        """The CA a certificate file (a .pfx) holds: its first certificate with a private
        key, else its first certificate (refused for the missing key); the others are its
        chain.

        Raises:
            DataError: the file holds no certificate, or see :meth:`checked`.
        """
        with_key = [entry for entry in entries if entry.key is not None]
        chosen = with_key[0] if with_key else (entries[0] if entries else None)
        if chosen is None:
            raise DataError(f"{source} holds no certificate")
        chain = tuple(e.cert for e in entries if e is not chosen)
        return cls.checked(chosen.cert, chosen.key, chain, where=source)


def crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    """RFC 5280 section 4.2.1.13: one distribution point with a full URI name."""
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def authority_key_identifier(signer: Signer) -> x509.AuthorityKeyIdentifier:
    """The issuer's SKI when it has one, else one computed from its key (RFC 5280 4.2.1.1)."""
    try:
        issuer_ski = signer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key())


def outlives_notice(not_after: dt.datetime, signer: Signer) -> list[Notice]:
    """A notice when the new certificate ends after its issuer (none when it does not)."""
    if not_after <= signer.cert.not_valid_after_utc:
        return []
    return [
        Notice(
            "outlives-issuer",
            f"the new certificate (until {not_after.date()}) outlives its issuer "
            f"(until {signer.cert.not_valid_after_utc.date()}); "
            "clients stop trusting it when the issuer expires",
        )
    ]

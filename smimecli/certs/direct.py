"""Direct-mode recipients: the certificates ``encrypt --cert FILE`` and ``--to ADDRESS`` name.

:func:`file_recipients` reads certificate files (PEM, DER, .p7b, the public part of a
.pfx): a bundle's CA certificates are its chain, not recipients, so only its end-entity
certificates are kept. A certificate that is a CA, expired or not yet valid is still used
(the caller named it) and gets a ``cert-not-usable`` notice. :func:`store_recipients`
picks each address's usable certificate in the store, ``other`` first, then ``my``, as
``gpgsm -r`` does. Neither prints nor logs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smimecli.choices import DEFAULT_KEY_TRANSPORT, DEFAULT_OAEP_HASH, DEFAULT_RECIPIENT_ID
from smimecli.errors import ConfigError, DataError, RejectError
from smimecli.notices import Notice

if TYPE_CHECKING:
    from cryptography import x509

    from smimecli.certs.formats import CertList
    from smimecli.certs.store import Store
    from smimecli.cms.recipients import Recipient

__all__ = ["KeyOptions", "file_recipients", "store_recipients"]


@dataclass(frozen=True)
class KeyOptions:
    """How the content key reaches each direct recipient (``--key-transport``,
    ``--oaep-hash``, ``--recipient-id``)."""

    key_transport: str = DEFAULT_KEY_TRANSPORT
    oaep_hash: str = DEFAULT_OAEP_HASH
    recipient_id: str = DEFAULT_RECIPIENT_ID

    def recipient(self, cert: x509.Certificate) -> Recipient:
        """The CMS recipient for ``cert`` with these options."""
        from smimecli.cms.recipients import Recipient

        return Recipient(
            cert,
            key_transport=self.key_transport,
            oaep_hash=self.oaep_hash,
            recipient_id=self.recipient_id,
        )


def file_recipients(
    paths: Sequence[Path], options: KeyOptions, password: bytes | None = None
) -> tuple[list[Recipient], list[Notice]]:
    """The recipients of certificate files, and a notice for each one not fit to use.

    Args:
        paths: the files; each yields its end-entity certificates (or its one certificate).
        options: key transport and recipient identifier for every recipient.
        password: for a .pfx (asked on a terminal when it needs one and this is None).

    Raises:
        DataError: a file holds a private key only, or no certificate to encrypt to (65).
        InputError: a file cannot be read (66).
        AuthError: a .pfx password is wrong (77).
    """
    from smimecli.files import read_input

    recipients: list[Recipient] = []
    notices: list[Notice] = []
    now = dt.datetime.now(dt.UTC)
    for path in paths:
        for cert in _end_entities(path, read_input(path), password, notices):
            problems = _validity_problems(cert, now)
            if problems:
                notices.append(_not_usable(cert, path, problems))
            recipients.append(options.recipient(cert))
    return recipients, notices


def _end_entities(
    path: Path, data: bytes, password: bytes | None, notices: list[Notice]
) -> list[x509.Certificate]:
    """The certificates of one file to encrypt to: a bundle (.pfx with its chain, .p7b)
    names its CA certificates too, which are left out; a single certificate is kept
    whatever it is. What the reader skipped goes to ``notices``."""
    from smimecli.certs.formats import holds_only_private_key, is_ca, load_certificates
    from smimecli.passwords import load_with_password

    if holds_only_private_key(data):
        raise DataError(
            f"{path} holds a private key, not a certificate: give it to "
            "'smimecli decrypt --key', or give --cert the recipient's certificate "
            "(.cer/.pem)"
        )

    def load(secret: bytes | None) -> CertList:
        return load_certificates(data, password=secret, source=str(path))

    entries = load_with_password(load, password, str(path))
    notices.extend(entries.notices)
    certs = [e.cert for e in entries if not e.chain and not is_ca(e.cert)]
    if not certs and len(entries) == 1:
        certs = [entries[0].cert]
    if not certs:
        raise DataError(f"{path} holds no end-entity certificate to encrypt to")
    return certs


def _validity_problems(cert: x509.Certificate, now: dt.datetime) -> list[str]:
    from smimecli.certs.formats import is_ca

    problems = []
    if is_ca(cert):
        problems.append("is a CA certificate, not a person's")
    if cert.not_valid_after_utc < now:
        problems.append(f"expired {cert.not_valid_after_utc:%Y-%m-%d}")
    elif cert.not_valid_before_utc > now:
        problems.append(f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    return problems


def _not_usable(cert: x509.Certificate, path: Path, problems: list[str]) -> Notice:
    from smimecli.certs.names import display_name

    text = (
        f"certificate {display_name(cert.subject)} in {path} "
        f"{' and '.join(problems)}; encrypting to it anyway because --cert names it"
    )
    return Notice("cert-not-usable", text)


def store_recipients(
    folder: Path, addresses: Sequence[str], options: KeyOptions
) -> list[Recipient]:
    """The recipient of each address: its usable certificate in the store in ``folder``,
    ``other`` first, then ``my`` (the one valid the longest).

    Raises:
        RejectError: an address without a usable certificate, or no store (67), naming
            the address and why.
    """
    from smimecli.certs.store import Store

    try:
        store = Store.open(folder, create=False)
    except ConfigError as exc:
        raise RejectError(
            f"--to {addresses[0]}: no certificate (no store in {folder}: import the "
            "recipient's certificate with 'smimecli certs import')"
        ) from exc
    with store:
        return [options.recipient(_store_choice(store, address)) for address in addresses]


def _store_choice(store: Store, address: str) -> x509.Certificate:
    from smimecli.certs import usable

    why = "no certificate in the store"
    for name in ("other", "my"):
        found = store.by_email(address, name)
        chosen = usable.best([c for c in found if not usable.problems(c.cert, email=address)])
        if chosen is not None:
            return chosen.cert
        if found and why.startswith("no certificate"):
            latest = usable.best(found)
            assert latest is not None
            reasons = usable.problems(latest.cert, email=address)
            why = f"certificate {latest.thumbprint} {', '.join(reasons)}"
    raise RejectError(
        f"--to {address}: {why}; import a usable certificate "
        "('smimecli certs import') or leave the address out"
    )

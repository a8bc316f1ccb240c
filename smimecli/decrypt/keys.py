"""Which private key and certificate open which recipient of a message.

A key comes from the caller (a file given with ``--key``, loaded by :func:`load_key_identity`),
or from the store's personal certificates (:func:`store_key_lookup`); :func:`store_finder`
names the store certificates a recipient identifier points at (``inspect``, and the error
of a message no key opens).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smimecli.certs.keys import PrivateKey
from smimecli.cms.unwrap import KeyIdentity, RecipientEntry, RecipientId

KeyLookup = Callable[[list[RecipientEntry]], list[KeyIdentity]]


@dataclass
class StoreMatch:
    """A store certificate that a recipient identifier names."""

    thumbprint: str
    subject: str
    has_key: bool


StoreFinder = Callable[[RecipientId], list[StoreMatch]]


def key_identities(
    key: PrivateKey | KeyIdentity | Iterable[KeyIdentity] | None,
    cert: Any,
) -> list[KeyIdentity]:
    """The key identities a caller gave: a key (with its certificate), or identities."""
    if key is None:
        return []
    if isinstance(key, KeyIdentity):
        return [key]
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return [KeyIdentity(key, cert)]
    return list(key)


def load_key_identity(
    key: Path, cert: Path | None = None, password: bytes | None = None, *, ask: bool = True
) -> KeyIdentity:
    """The private key in ``key`` (a .pfx/.p12, PEM or DER file) and its certificate: the
    one in ``cert`` when given (it must belong to the key), else the one the key file
    carries. When ``password`` is None (none was given) and the key turns out to need one,
    it is asked for on a terminal (no echo) if ``ask``, else that is an AuthError.

    Raises:
        UsageError: ``cert`` is not the key's certificate (64).
        AuthError: a wrong password, or one needed and none to be had (77).
    """
    from smimecli.certs.keys import cert_matches_key, load_certificate, load_private_key
    from smimecli.errors import UsageError
    from smimecli.passwords import load_with_password

    if ask:
        loaded = load_with_password(lambda s: load_private_key(key, s), password, str(key))
    else:
        loaded = load_private_key(key, password)
    own = loaded.cert
    if cert is not None:
        own = load_certificate(cert)
        if not cert_matches_key(own, loaded.key):
            raise UsageError(f"--cert {cert} does not belong to the private key in {key}")
    return KeyIdentity(loaded.key, own)


def open_store_if_exists(folder: Any) -> Any:
    """The store in ``folder`` opened read-only, or None when there is none (``inspect``
    then shows no store matches). A damaged, locked or unreadable store is its error
    (78, 75, 74), never "no store"."""
    from smimecli.certs.store import DB_NAME, Store

    if not (Path(folder) / DB_NAME).exists():
        return None
    return Store.open(folder, readonly=True)


def _store_rows(store: Any, rid: RecipientId) -> list[Any]:
    if rid.kind == "issuer_serial" and rid.issuer is not None and rid.serial is not None:
        return list(store.find_by_issuer_serial(rid.issuer, rid.serial))
    if rid.kind == "ski" and rid.key_id:
        return list(store.find_by_ski(rid.key_id))
    return []


def store_key_lookup(folder: Any, passphrase: bytes | None = None) -> KeyLookup:
    """A key lookup in the store's certificates with private keys (``decrypt`` without --key);
    ``passphrase`` decrypts the store's keys (default ``$SMIMECLI_STORE_PASSWORD``)."""

    def lookup(recipients: list[RecipientEntry]) -> list[KeyIdentity]:
        from smimecli.certs.store import Store

        # The keys must come from the store: a missing one is 78, not "no key" (77).
        store: Any = Store.open(folder, readonly=True, passphrase=passphrase)
        found: list[KeyIdentity] = []
        seen: set[str] = set()
        with store:
            for entry in recipients:
                for row in _store_rows(store, entry.rid):
                    if not row.has_key or row.thumbprint in seen:
                        continue
                    seen.add(row.thumbprint)
                    key = store.private_key(row.thumbprint)
                    if key is not None:
                        found.append(KeyIdentity(key, row.cert))
        return found

    return lookup


def lazy_store_finder(folder: Any) -> StoreFinder:
    """A :func:`store_finder` that opens the store only when asked (error messages), and
    finds nothing when the store cannot be opened."""
    from smimecli.errors import SmimeError

    def find(rid: RecipientId) -> list[StoreMatch]:
        try:
            store = open_store_if_exists(folder)
            if store is None:
                return []
            with store:
                return store_finder(store)(rid)
        except SmimeError:
            return []

    return find


def store_finder(store: Any) -> StoreFinder:
    """Finds the certificates of an open store (or None) that a recipient id names."""

    def find(rid: RecipientId) -> list[StoreMatch]:
        if store is None:
            return []
        rows = _store_rows(store, rid)
        return [StoreMatch(r.thumbprint, r.subject, bool(r.has_key)) for r in rows]

    return find

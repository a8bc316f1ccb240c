"""The certificate store: one SQLite database in the store folder.

Layout: ``certs`` holds each distinct certificate once (DER, SHA-1 thumbprint, subject,
issuer, serial, SKI, validity, friendly name, the private key as PKCS#8), ``memberships``
says which Windows-named stores (``my``, ``other``, ``root``, ``ca``) hold it, and
``emails`` indexes the lower-cased addresses it names, so a lookup by address reads a few
index pages and parses only the certificates it returns, however large the store.

Every change is one transaction (``BEGIN IMMEDIATE``), the journal is WAL so readers never
see half an import, the folder is 0700 and the database 0600. Private keys are encrypted
with the store passphrase (``SMIMECLI_STORE_PASSWORD``) when one is set.

Selectors (:meth:`Store.find`): a SHA-1 thumbprint or a unique prefix of 8+ hex digits
(spaces and colons ignored, as copied from Windows), an e-mail address, or a subject CN
(case-insensitive). :meth:`Store.select_one` raises :class:`UsageError` (64) listing the
matches when a selector matches several certificates and :class:`DataError` (65) when it
matches none: the certificate the command needs is not there.

Modules: :mod:`.store` (the :class:`Store` class: open, add, remove, harvest, revocations),
:mod:`.connection` (the SQLite file, transactions, errors), :mod:`.schema` (tables,
migrations, read-only stand-ins), :mod:`.lookups` (the queries), :mod:`.sealing` (private
keys at rest) and :mod:`.rows` (:class:`StoredCert`, store names). Import from this package.
"""

from smimecli.certs.store.connection import DB_NAME, LOCK_TIMEOUT, default_store_dir
from smimecli.certs.store.rows import STORE_NAMES, StoredCert, check_store_name, iso
from smimecli.certs.store.schema import SCHEMA_VERSION
from smimecli.certs.store.sealing import PASSWORD_ENV
from smimecli.certs.store.store import Store

__all__ = [
    "DB_NAME",
    "LOCK_TIMEOUT",
    "PASSWORD_ENV",
    "SCHEMA_VERSION",
    "STORE_NAMES",
    "Store",
    "StoredCert",
    "check_store_name",
    "default_store_dir",
    "iso",
]

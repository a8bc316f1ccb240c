"""What ``certs list`` and ``certs show`` report about a certificate, as plain data.

Kept in the library (not the CLI) so that ``--json`` output and Python callers see the same
fields.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from smimecli.certs import names, usable
from smimecli.certs.store import Store, StoredCert, iso
from smimecli.rules import patterns as rules

_CA_STORES = {"root", "ca"}


def key_description(cert: x509.Certificate) -> str:
    """``RSA 2048`` / ``EC secp256r1`` / the key class name."""
    try:
        key = cert.public_key()
    except (ValueError, TypeError):
        return "unreadable"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__.replace("PublicKey", "").lstrip("_")


def list_problems(stored: StoredCert, *, at: dt.datetime | None = None) -> list[str]:
    """Problems for ``certs list``: the full usable test for recipient and personal
    certificates; only validity for certificates held purely as CAs (a root is not meant
    to be encrypted to)."""
    try:
        cert = stored.cert
    except ValueError as exc:
        return [f"unparsable certificate ({exc})"]
    found = usable.problems(cert, at=at)
    if stored.store_names and set(stored.store_names) <= _CA_STORES:
        return [p for p in found if p.startswith(("expired", "not yet valid"))]
    return found


@names.quiet()
def summary(stored: StoredCert, *, at: dt.datetime | None = None) -> dict[str, Any]:
    """One ``certs list`` row."""
    return {
        "stores": list(stored.store_names),
        "subject": stored.subject,
        "emails": list(stored.emails),
        "issuer": stored.issuer,
        "not_after": stored.not_after,
        "thumbprint": stored.thumbprint,
        "has_key": stored.has_key,
        "friendly_name": stored.friendly_name,
        "problems": list_problems(stored, at=at),
        "capabilities": None if stored.capabilities is None else list(stored.capabilities),
        "signing_time": stored.signing_time,
    }


# The names a person reads (and gives to ``gen-root --key-usage``): Windows/PowerShell's.
KEY_USAGE_NAMES: tuple[tuple[str, str], ...] = (
    ("digital_signature", "DigitalSignature"),
    ("content_commitment", "NonRepudiation"),
    ("key_encipherment", "KeyEncipherment"),
    ("data_encipherment", "DataEncipherment"),
    ("key_agreement", "KeyAgreement"),
    ("key_cert_sign", "CertSign"),
    ("crl_sign", "CRLSign"),
    ("encipher_only", "EncipherOnly"),
    ("decipher_only", "DecipherOnly"),
)


def _usage_flag(usage: x509.KeyUsage, attribute: str) -> bool:
    try:
        return bool(getattr(usage, attribute))
    except ValueError:  # encipher_only/decipher_only without key_agreement
        return False


# SMIMECapabilities as the cipher names ``encrypt --cipher`` uses.
_CAPABILITY_NAMES = {
    "aes256_gcm": "aes256-gcm",
    "aes128_gcm": "aes128-gcm",
    "aes192_gcm": "aes192-gcm",
    "aes256_cbc": "aes256",
    "aes192_cbc": "aes192",
    "aes128_cbc": "aes128",
    "tripledes_3key": "3des",
    "rc2": "rc2",
    "rsaes_oaep": "rsa-oaep",
}


def capability_names(capabilities: list[str] | None) -> list[str]:
    """Harvested SMIMECapabilities in the words of ``encrypt --cipher`` (others as given)."""
    return [_CAPABILITY_NAMES.get(c, c) for c in capabilities or []]


def _extension_lines(cert: x509.Certificate) -> dict[str, Any]:
    result: dict[str, Any] = {}
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        flags = [name for attr, name in KEY_USAGE_NAMES if _usage_flag(usage, attr)]
        result["key_usage"] = flags
    except (x509.ExtensionNotFound, ValueError):
        result["key_usage"] = None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        result["extended_key_usage"] = [getattr(o, "_name", None) or o.dotted_string for o in eku]
    except (x509.ExtensionNotFound, ValueError):
        result["extended_key_usage"] = None
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        result["ca"] = basic.ca
    except (x509.ExtensionNotFound, ValueError):
        result["ca"] = None
    return result


@names.quiet()
def details(stored: StoredCert, *, at: dt.datetime | None = None) -> dict[str, Any]:
    """Everything ``certs show`` prints."""
    cert = stored.cert
    doc = summary(stored, at=at)
    doc.update(
        {
            "common_name": names.common_name(cert),
            "serial": format(cert.serial_number, "X"),
            "not_before": iso(cert.not_valid_before_utc),
            "sha256": cert.fingerprint(hashes.SHA256()).hex().upper(),
            "key": key_description(cert),
            "signature_hash": getattr(cert.signature_hash_algorithm, "name", None),
        }
    )
    doc.update(_extension_lines(cert))
    return doc


def email_pattern(pattern: str) -> rules.Glob:
    """Compile a ``*``/``?`` address pattern for :func:`matches_email`, once per listing.

    Only ``*`` and ``?`` are wildcards, as in the rules file: ``[`` is literal.
    """
    return rules.pattern_regex(rules.normalize_address(pattern.strip().lower()))


def matches_email(stored: StoredCert, pattern: rules.Glob) -> bool:
    """Whether one of the certificate's addresses matches an :func:`email_pattern`."""
    return any(pattern.fullmatch(rules.normalize_address(a)) for a in stored.emails)


def select(
    store: Store,
    store_name: str | None = None,
    *,
    email: str | None = None,
    until: dt.datetime | None = None,
) -> list[StoredCert]:
    """The certificates ``certs list`` shows: of one store or all, naming an address that
    matches ``email`` (an address, or a ``*``/``?`` pattern), expired or expiring by
    ``until``; in the order they were added."""
    if email and not rules.is_wildcard(email):
        rows = store.by_email(email, store_name)
    else:
        rows = store.certificates(store_name)
        if email:
            pattern = email_pattern(email)
            rows = [r for r in rows if matches_email(r, pattern)]
    if until is not None:
        rows = [r for r in rows if r.cert.not_valid_after_utc <= until]
    return rows


PURPOSES = ("encrypt", "sign", "both")


def verification(
    store: Store,
    cert: x509.Certificate,
    name: str,
    *,
    purpose: str = "both",
    extra: list[x509.Certificate] | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """What ``certs verify`` reports: the chain through the store's ``ca`` certificates
    (and ``extra`` ones) to a ``root``, revocation as gen-crl recorded it, validity and
    usability for ``purpose`` (``encrypt``, ``sign`` or ``both``); ``ok`` when nothing
    is wrong. ``name`` is how the report names the certificate (a file, a thumbprint)."""
    now = at or dt.datetime.now(dt.UTC)
    roots = [c.cert for c in store.certificates("root")]
    cas = [c.cert for c in store.certificates("ca")] + list(extra or [])
    chain = usable.chain_to_root(cert, roots, cas, at=now)
    revoked = any(store.is_revoked(c) for c in (chain or [cert])[:-1] or [cert])
    encrypt = usable.problems(cert, at=now)
    sign = usable.signing_problems(cert, at=now)
    problems: list[str] = []
    if chain is None:
        problems.append("does not chain to a trusted root of the store")
    if revoked:
        problems.append("revoked (recorded by gen-crl)")
    wanted = {"encrypt": encrypt, "sign": sign, "both": encrypt + sign}[purpose]
    for reason in wanted:
        if reason not in problems:
            problems.append(reason)
    return {
        "certificate": name,
        "thumbprint": names.thumbprint(cert),
        "subject": names.display_name(cert.subject),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "trusted": chain is not None,
        "chain": [] if chain is None else [names.display_name(c.subject) for c in chain],
        "revoked": revoked,
        "encryption": {"usable": not encrypt, "problems": encrypt},
        "signing": {"usable": not sign, "problems": sign},
        "purpose": purpose,
        "ok": not problems,
        "problems": problems,
    }

"""Recovering the content-encryption key from a RecipientInfo (RFC 5652 section 6.2).

- KeyTransRecipientInfo: RSA PKCS#1 v1.5 (RFC 8017 7.2) with implicit rejection, and
  RSAES-OAEP with any hash, MGF1 hash and label (RFC 8017 7.1, parameters per RFC 4055 4.1:
  absent parameters mean SHA-1, MGF1 with SHA-1 and the empty label).
- KeyAgreeRecipientInfo (ECDH) and KEKRecipientInfo: key agreement and key unwrap are in
  :mod:`smimecli.cms.keywrap`.

Implicit rejection, and why no error here is distinct: a v1.5 block with bad padding must not
be told apart from a good one, or the recipient becomes a Bleichenbacher padding oracle
(the Marvin attack). cryptography 50 with its bundled OpenSSL (3.2 and later) already
implements implicit rejection: a bad block decrypts to a deterministic pseudo-random message
of pseudo-random length instead of raising. Since the content key has a known length, this
module then replaces any result of the wrong length by a key derived with HMAC-SHA256 from a
secret bound to the private key and the ciphertext — deterministic, so a retry gives the same
answer, and the same path is taken when an older OpenSSL raises instead. The wrong key then
fails where a wrong private key fails too: at the content's padding or tag.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from asn1crypto import core
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from smimecli.certs.keys import PrivateKey
from smimecli.cms.keywrap import (
    UnwrapError,
    hash_algorithm,
    kari_parameters,
    unwrap_kari,
    unwrap_kekri,
)
from smimecli.cms.recipients import (
    AES_WRAP,
    OID_RSA,
    OID_RSAES_OAEP,
    subject_key_identifier,
)
from smimecli.errors import DataError

# --- recipient identifiers --------------------------------------------------------------------


@dataclass(frozen=True)
class RecipientId:
    """How a RecipientInfo names its recipient: issuer + serial, an SKI, or a KEK id."""

    kind: str  # "issuer_serial" | "ski" | "kek_id"
    issuer: a_x509.Name | None = None
    serial: int | None = None
    key_id: bytes | None = None


def recipient_id(rid: Any) -> RecipientId:
    """The RecipientId of an asn1crypto RecipientIdentifier or KeyAgreementRecipientIdentifier."""
    name = rid.name
    if name == "issuer_and_serial_number":
        ias = rid.chosen
        return RecipientId(
            "issuer_serial", issuer=ias["issuer"], serial=ias["serial_number"].native
        )
    if name == "subject_key_identifier":
        return RecipientId("ski", key_id=rid.chosen.native)
    if name == "r_key_id":
        return RecipientId("ski", key_id=rid.chosen["subject_key_identifier"].native)
    raise DataError(f"unsupported recipient identifier {name} in the message")


def key_ski(key: PrivateKey) -> bytes:
    """The RFC 5280 method 1 SKI of a key (what most tools put in certificates)."""
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest


def rid_matches(rid: RecipientId, cert: x509.Certificate) -> bool:
    """True when ``rid`` names ``cert`` (RFC 5652 6.2.1: issuer + serial, or SKI)."""
    if rid.kind == "issuer_serial":
        if rid.serial != cert.serial_number or rid.issuer is None:
            return False
        try:
            issuer = a_x509.Name.load(cert.issuer.public_bytes())
            return bool(issuer == rid.issuer)
        except ValueError:
            return False
    if rid.kind == "ski":
        return rid.key_id == subject_key_identifier(cert)
    return False


# --- RSA key transport ------------------------------------------------------------------------


def _rejection_key(key: rsa.RSAPrivateKey, ciphertext: bytes, length: int) -> bytes:
    """A deterministic pseudo-random content key for a rejected v1.5 block.

    The secret is derived from the private exponent, so nobody without the key can predict
    it, and a given ciphertext always yields the same key (no timing or retry differences).
    """
    d = key.private_numbers().d
    secret = hashlib.sha256(
        b"smimecli implicit rejection\x00" + d.to_bytes((d.bit_length() + 7) // 8, "big")
    ).digest()
    out = b""
    counter = 0
    while len(out) < length:
        out += hmac.new(secret, counter.to_bytes(4, "big") + ciphertext, hashlib.sha256).digest()
        counter += 1
    return out[:length]


def rsa_v15_unwrap(key: rsa.RSAPrivateKey, ciphertext: bytes, key_length: int | None) -> bytes:
    """PKCS#1 v1.5 decryption of a content key with implicit rejection (see module doc).

    Args:
        key_length: the content key size the content cipher needs, when it is fixed.
    """
    fallback = key_length or 16
    try:
        plain: bytes | None = key.decrypt(ciphertext, padding.PKCS1v15())
    except ValueError:  # an OpenSSL without implicit rejection; also a wrong-size block
        plain = None
    if plain is None or not plain or (key_length is not None and len(plain) != key_length):
        return _rejection_key(key, ciphertext, fallback)
    return plain


def oaep_parameters(params: Any) -> tuple[str, str, bytes]:
    """(hash, MGF1 hash, label) of RSAES-OAEP parameters; absent means SHA-1 (RFC 4055 4.1)."""
    if params is None or isinstance(params, core.Null) or params.native is None:
        return "sha1", "sha1", b""
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise DataError(f"unsupported OAEP mask generation {mgf['algorithm'].dotted}")
    mgf_hash = mgf["parameters"]["algorithm"].native
    source = params["p_source_algorithm"]
    label = source["parameters"].native or b""
    return str(hash_name), str(mgf_hash), bytes(label)


def rsa_oaep_unwrap(key: rsa.RSAPrivateKey, ciphertext: bytes, params: Any) -> bytes:
    """RSAES-OAEP decryption (RFC 8017 7.1.2) with the message's parameters."""
    hash_name, mgf_hash, label = oaep_parameters(params)
    try:
        return key.decrypt(
            ciphertext,
            padding.OAEP(
                mgf=padding.MGF1(hash_algorithm(mgf_hash)),
                algorithm=hash_algorithm(hash_name),
                label=label or None,
            ),
        )
    except ValueError as exc:
        raise UnwrapError("OAEP decoding failed") from exc


def unwrap_ktri(ri: Any, key: rsa.RSAPrivateKey, key_length: int | None) -> bytes:
    """The content key of a KeyTransRecipientInfo (asn1crypto) for an RSA ``key``."""
    alg = ri["key_encryption_algorithm"]
    oid = alg["algorithm"].dotted
    encrypted = ri["encrypted_key"].native
    if oid == OID_RSA:
        return rsa_v15_unwrap(key, encrypted, key_length)
    if oid == OID_RSAES_OAEP:
        return rsa_oaep_unwrap(key, encrypted, alg["parameters"])
    raise DataError(f"unsupported key transport algorithm {oid} in the message")


# --- choosing the recipient -------------------------------------------------------------------


@dataclass
class RecipientEntry:
    """One way into the message: a KTRI, one RecipientEncryptedKey of a KARI, or a KEKRI."""

    kind: str  # "ktri" | "kari" | "kekri"
    rid: RecipientId
    info: Any  # the asn1crypto KeyTransRecipientInfo / KeyAgreeRecipientInfo / KEKRecipientInfo
    encrypted_key: bytes
    algorithm_oid: str
    algorithm: str  # rsaEncryption, rsaes-oaep, dhSinglePass-..., aes128-wrap...
    hash: str | None = None  # OAEP hash or KDF hash
    mgf_hash: str | None = None
    label: bytes | None = None
    wrap: str | None = None  # key wrap of a KARI


def list_recipients(recipient_infos: Any) -> list[RecipientEntry]:
    """Every recipient of an asn1crypto RecipientInfos, in message order."""
    entries: list[RecipientEntry] = []
    for choice in recipient_infos:
        kind = choice.name
        ri = choice.chosen
        if kind == "ktri":
            alg = ri["key_encryption_algorithm"]
            oid = alg["algorithm"].dotted
            entry = RecipientEntry(
                "ktri",
                recipient_id(ri["rid"]),
                ri,
                ri["encrypted_key"].native,
                oid,
                {OID_RSA: "rsaEncryption", OID_RSAES_OAEP: "rsaes-oaep"}.get(oid, oid),
            )
            if oid == OID_RSAES_OAEP:
                entry.hash, entry.mgf_hash, entry.label = oaep_parameters(alg["parameters"])
            entries.append(entry)
        elif kind == "kari":
            oid = ri["key_encryption_algorithm"]["algorithm"].dotted
            try:
                scheme, kdf_hash, _, wrap_name, _ = kari_parameters(ri)
            except DataError:
                scheme, kdf_hash, wrap_name = oid, None, None
            for rek in ri["recipient_encrypted_keys"]:
                entries.append(
                    RecipientEntry(
                        "kari",
                        recipient_id(rek["rid"]),
                        ri,
                        rek["encrypted_key"].native,
                        oid,
                        scheme,
                        hash=kdf_hash,
                        wrap=wrap_name,
                    )
                )
        elif kind == "kekri":
            oid = ri["key_encryption_algorithm"]["algorithm"].dotted
            entries.append(
                RecipientEntry(
                    "kekri",
                    RecipientId("kek_id", key_id=ri["kekid"]["key_identifier"].native),
                    ri,
                    ri["encrypted_key"].native,
                    oid,
                    AES_WRAP.get(oid, (oid, 0))[0],
                )
            )
        else:
            entries.append(
                RecipientEntry(kind, RecipientId(kind), ri, b"", "", f"unsupported ({kind})")
            )
    return entries


@dataclass
class KeyIdentity:
    """A private key and, when known, the certificate that names it in messages."""

    key: PrivateKey
    cert: x509.Certificate | None = None


def _compatible(entry: RecipientEntry, key: PrivateKey) -> bool:
    if entry.kind == "ktri":
        return (
            isinstance(key, rsa.RSAPrivateKey)
            and len(entry.encrypted_key) == (key.key_size + 7) // 8
        )
    if entry.kind == "kari":
        return isinstance(key, ec.EllipticCurvePrivateKey)
    return False


def _unwrap(entry: RecipientEntry, key: PrivateKey, key_length: int | None) -> bytes:
    if entry.kind == "ktri" and isinstance(key, rsa.RSAPrivateKey):
        return unwrap_ktri(entry.info, key, key_length)
    if entry.kind == "kari" and isinstance(key, ec.EllipticCurvePrivateKey):
        return unwrap_kari(entry.info, entry.encrypted_key, key)
    raise UnwrapError("key type does not fit the recipient")


def content_key_candidates(
    recipients: list[RecipientEntry],
    identities: list[KeyIdentity],
    *,
    key_length: int | None,
    kek: bytes | None = None,
    kek_id: bytes | None = None,
) -> list[bytes]:
    """The content keys worth trying, best first; empty when no key opens any recipient.

    A recipient named by an identity's certificate (issuer + serial or SKI) is trusted: its
    key is the only candidate. A key given without a certificate is tried on every
    recipient of its type and size (with implicit rejection each RSA attempt yields some
    key), and the content's padding or tag then tells which one, if any, was right.
    """
    exact: list[tuple[RecipientEntry, PrivateKey]] = []
    loose: list[tuple[RecipientEntry, PrivateKey]] = []
    for ident in identities:
        own_ski = key_ski(ident.key)
        for entry in recipients:
            if not _compatible(entry, ident.key):
                continue
            if ident.cert is not None:
                if rid_matches(entry.rid, ident.cert):
                    exact.append((entry, ident.key))
            elif entry.rid.kind == "ski" and entry.rid.key_id == own_ski:
                exact.append((entry, ident.key))
            else:
                loose.append((entry, ident.key))
    if kek is not None:
        for entry in recipients:
            if entry.kind == "kekri" and (kek_id is None or entry.rid.key_id == kek_id):
                try:
                    return [unwrap_kekri(entry.info, kek)]
                except UnwrapError:
                    continue
    for entry, key in exact:
        try:
            return [_unwrap(entry, key, key_length)]
        except UnwrapError:
            continue
    found: list[bytes] = []
    for entry, key in loose:
        try:
            cek = _unwrap(entry, key, key_length)
        except UnwrapError:
            continue
        if cek not in found:
            found.append(cek)
    return found

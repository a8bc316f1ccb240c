"""Digest and signature algorithms of CMS SignedData, both directions (RFC 5754, 4056, 5753).

The builder names its algorithms the way OpenSSL and Outlook write them: ``rsaEncryption``
for RSA PKCS#1 v1.5 (RFC 3370 section 3.2 allows it next to ``sha256WithRSAEncryption``),
``id-RSASSA-PSS`` with explicit parameters (RFC 4056 section 3: hash, MGF1 with the same
hash, salt length = hash length), and ``ecdsa-with-SHA*`` (RFC 5753 section 2.1.1). The
verifier reads all of them, and ``sha*WithRSAEncryption`` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from smimecli.errors import DataError, UsageError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_EC_PUBLIC_KEY = "1.2.840.10045.2.1"  # some old signers name the key type, not ECDSA
SIGNATURE_SCHEMES = ("pkcs1v15", "pss")
DEFAULT_HASH = "sha256"


@dataclass(frozen=True)
class Digest:
    """One digest algorithm: its asn1crypto name, RFC 8551 micalg value and hash class."""

    name: str
    micalg: str
    size: int

    def new(self) -> hashes.HashAlgorithm:
        """A fresh cryptography hash algorithm object."""
        return _HASH_CLASSES[self.name]()


_HASH_CLASSES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
DIGESTS = {
    "sha1": Digest("sha1", "sha-1", 20),
    "sha224": Digest("sha224", "sha-224", 28),
    "sha256": Digest("sha256", "sha-256", 32),
    "sha384": Digest("sha384", "sha-384", 48),
    "sha512": Digest("sha512", "sha-512", 64),
}
SIGNING_HASHES = ("sha256", "sha384", "sha512")  # what the builder offers
WEAK_DIGESTS = ("sha1",)  # RFC 8551 section 2.1: verify, but do not trust, SHA-1


def signing_digest(name: str) -> Digest:
    """The digest to sign with; raises :class:`UsageError` for anything but SHA-2."""
    key = name.lower().replace("-", "")
    if key not in SIGNING_HASHES:
        raise UsageError(f"unknown hash {name!r}: use one of {', '.join(SIGNING_HASHES)}")
    return DIGESTS[key]


def digest_by_name(name: str) -> Digest:
    """A digest the verifier knows, by asn1crypto name; :class:`DataError` otherwise."""
    found = DIGESTS.get(name)
    if found is None:
        raise DataError(f"unsupported digest algorithm {name} in the signature")
    return found


def signature_algorithm(key: PrivateKey, digest: Digest, scheme: str) -> dict[str, Any]:
    """The SignerInfo signatureAlgorithm (asn1crypto native form) for ``key``."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"algorithm": f"{digest.name}_ecdsa"}
    if scheme == "pss":
        hash_alg = {"algorithm": digest.name}
        params = {
            "hash_algorithm": hash_alg,
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": hash_alg},
            "salt_length": digest.size,
            "trailer_field": "trailer_field_bc",
        }
        return {"algorithm": "rsassa_pss", "parameters": params}
    return {"algorithm": "rsassa_pkcs1v15", "parameters": None}


def sign(key: PrivateKey, digest: Digest, scheme: str, data: bytes) -> bytes:
    """Sign ``data`` (the DER signed attributes) with ``key``."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(digest.new()))
    if scheme == "pss":
        pss = padding.PSS(mgf=padding.MGF1(digest.new()), salt_length=digest.size)
        return key.sign(data, pss, digest.new())
    return key.sign(data, padding.PKCS1v15(), digest.new())


def describe(sig_alg: Any, digest: Digest) -> str:
    """A readable name of a SignerInfo signatureAlgorithm, e.g. ``rsassa_pss-sha256``."""
    name = str(sig_alg["algorithm"].native)
    if name == "rsassa_pkcs1v15":
        return f"rsassa_pkcs1v15-{digest.name}"
    if name == "rsassa_pss":
        params = sig_alg["parameters"]
        return f"rsassa_pss-{params['hash_algorithm']['algorithm'].native}"
    return name


def _pss_padding(params: Any) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    """PSS padding and hash from RSASSA-PSS-params (RFC 4056 section 3.1)."""
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise DataError("unsupported RSASSA-PSS mask generation function in the signature")
    mgf_hash = mgf["parameters"]["algorithm"].native
    salt = int(params["salt_length"].native)
    pss = padding.PSS(mgf=padding.MGF1(digest_by_name(mgf_hash).new()), salt_length=salt)
    return pss, digest_by_name(hash_name).new()


def verify(
    public_key: Any,
    sig_alg: Any,
    digest: Digest,
    data: bytes,
    signature: bytes,
    *,
    prehashed: bool = False,
) -> bool:
    """Check ``signature`` over ``data``; False when it does not match.

    ``prehashed``: ``data`` is already the digest (a SignerInfo without signed attributes
    signs the content itself, RFC 5652 section 5.4, and the content was hashed as a stream).

    Raises:
        DataError: the algorithm is unknown or does not fit the certificate's key.
    """
    name = sig_alg["algorithm"].native
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if not (str(name).endswith("ecdsa") or name == _EC_PUBLIC_KEY):
                raise DataError(f"signature algorithm {name} does not fit the signer's EC key")
            public_key.verify(signature, data, ec.ECDSA(_maybe(digest.new(), prehashed)))
            return True
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise DataError("the signer's certificate holds neither an RSA nor an EC key")
        if name == "rsassa_pss":
            pss, hash_alg = _pss_padding(sig_alg["parameters"])
            public_key.verify(signature, data, pss, _maybe(hash_alg, prehashed))
            return True
        if name == "rsassa_pkcs1v15" or str(name).endswith("_rsa"):
            plain = name == "rsassa_pkcs1v15"
            hash_alg = digest.new() if plain else digest_by_name(sig_alg.hash_algo).new()
            public_key.verify(signature, data, padding.PKCS1v15(), _maybe(hash_alg, prehashed))
            return True
    except InvalidSignature:
        return False
    raise DataError(f"unsupported signature algorithm {name}")


def _maybe(hash_alg: hashes.HashAlgorithm, prehashed: bool) -> Any:
    return utils.Prehashed(hash_alg) if prehashed else hash_alg

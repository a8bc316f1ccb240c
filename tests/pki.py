"""A small test PKI built directly with cryptography (independent of smimecli.lab), so
that CMS and store tests do not depend on the code they would be checking."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASSWORD = b"test-password"


@dataclass
class Identity:
    """A certificate with its private key and the files it was written to."""

    name: str
    email: str
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_pem: Path
    cert_der: Path
    key_pem: Path  # unencrypted PKCS#8
    pfx: Path  # modern PKCS#12, password PASSWORD

    @property
    def thumbprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA1()).hex().upper()


def _name(cn: str, email: str | None = None) -> x509.Name:
    attrs = []
    if email:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class TestCA:
    """A root CA that issues user certificates into a folder."""

    __test__ = False  # not a pytest class

    def __init__(self, folder: Path, cn: str = "Test Root V1") -> None:
        self.folder = folder
        self._issued: dict[str, int] = {}
        folder.mkdir(parents=True, exist_ok=True)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.UTC)
        name = _name(cn)
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=10))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=True,
                    key_agreement=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=False,
            )
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = folder / "ca.pem"
        self.cert_pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        email: str,
        *,
        key_type: str = "rsa",
        days: int = 365,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        eku: bool = True,
        key_usage: bool = True,
    ) -> Identity:
        """Issue a user certificate; key_type is 'rsa', 'p256' or 'p384'."""
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if key_type == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif key_type == "p256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = ec.generate_private_key(ec.SECP384R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name, email))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=10))
            .not_valid_after(not_after or now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if key_usage:
            is_rsa = key_type == "rsa"
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=is_rsa,
                    data_encipherment=False,
                    key_agreement=not is_rsa,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        if eku:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False
        )
        cert = builder.sign(self.key, hashes.SHA256())
        # A name issued twice must not overwrite the files of the first identity.
        base = name.replace(" ", "_")
        self._issued[base] = self._issued.get(base, 0) + 1
        count = self._issued[base]
        stem = self.folder / (base if count == 1 else f"{base}-{count}")
        cert_pem = stem.with_suffix(".pem")
        cert_der = stem.with_suffix(".cer")
        key_pem = stem.with_suffix(".key")
        pfx = stem.with_suffix(".pfx")
        cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        cert_der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        key_pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_pem.chmod(0o600)
        pfx.write_bytes(
            pkcs12.serialize_key_and_certificates(
                name.encode(),
                key,
                cert,
                [self.cert],
                serialization.BestAvailableEncryption(PASSWORD),
            )
        )
        return Identity(name, email, key, cert, cert_pem, cert_der, key_pem, pfx)


def legacy_pfx(identity: Identity, ca: TestCA, password: bytes) -> bytes:
    """``identity`` as the legacy PKCS#12 form (3DES, SHA-1 MAC) that gpgsm 2.2 reads."""
    return pkcs12.serialize_key_and_certificates(
        identity.name.encode(),
        identity.key,
        identity.cert,
        [ca.cert],
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(password),
    )


def import_into_gpgsm(
    run: Callable[[list[str], bytes], subprocess.CompletedProcess[bytes]],
    identity: Identity,
    ca: TestCA,
    password: bytes,
    folder: Path,
) -> subprocess.CompletedProcess[bytes]:
    """Import ``identity`` with its key into gpgsm through ``run(args, stdin)``.

    gpgsm 2.2 now and then fails to decrypt a valid legacy .pfx ("decryption failed;
    trying charset ...", seen about once in twenty runs, depending on the random salts):
    a fresh file with new salts is tried, up to three times.
    """
    done: subprocess.CompletedProcess[bytes] | None = None
    for attempt in range(3):
        path = folder / f"{identity.name.lower()}-{attempt}.p12"
        path.write_bytes(legacy_pfx(identity, ca, password))
        done = run(["--import", str(path)], password + b"\n")
        if done.returncode == 0 or b"decryption failed" not in done.stderr:
            return done
    assert done is not None
    return done

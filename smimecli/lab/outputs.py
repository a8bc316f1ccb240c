"""The files a lab command writes: the certificate (DER, PEM), its key (encrypted PKCS#8
PEM) and both together with the chain as a password-protected .pfx (PKCS#12).

:func:`output_files` only serialises; the command writes the files atomically
(smimecli.files.PendingOutputs), together with the store change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from smimecli.lab.issuing import Issued

# Files that hold a private key are readable by their owner only.
KEY_FILE_MODE = 0o600


@dataclass(frozen=True)
class OutputFile:
    """One file to write: what it holds (``pfx``, ``cer``, ``pem``, ``key``), where, its
    bytes, and its mode (None: the usual mode for a new file)."""

    kind: str
    path: Path
    data: bytes
    mode: int | None = None


def output_files(
    issued: Issued,
    *,
    pfx: Path | None = None,
    cer: Path | None = None,
    pem: Path | None = None,
    key: Path | None = None,
    password: bytes | None = None,
    pfx_encryption: str = "modern",
    friendly_name: str | None = None,
) -> list[OutputFile]:
    """The files asked for, serialised, in the order .pfx, .cer, .pem, key.

    ``pfx`` and ``key`` need ``password`` and a certificate with its private key.
    """
    from smimecli.certs.pfx import write_pfx

    files: list[OutputFile] = []
    if pfx is not None:
        assert password is not None and issued.key is not None
        data = write_pfx(
            issued.key,
            issued.cert,
            issued.chain,
            password=password,
            encryption=pfx_encryption,
            friendly_name=friendly_name,
        )
        files.append(OutputFile("pfx", pfx, data, KEY_FILE_MODE))
    if cer is not None:
        files.append(OutputFile("cer", cer, issued.cert.public_bytes(serialization.Encoding.DER)))
    if pem is not None:
        files.append(OutputFile("pem", pem, issued.cert.public_bytes(serialization.Encoding.PEM)))
    if key is not None:
        assert password is not None and issued.key is not None
        key_pem = issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
        files.append(OutputFile("key", key, key_pem, KEY_FILE_MODE))
    return files

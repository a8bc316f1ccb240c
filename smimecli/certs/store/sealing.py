"""Private keys at rest: PKCS#8, encrypted with the store passphrase when one is set."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from smimecli.certs.formats import PrivateKey
from smimecli.certs.store.connection import Connection
from smimecli.errors import AuthError

PASSWORD_ENV = "SMIMECLI_STORE_PASSWORD"


class Sealing(Connection):
    """Sealing a private key for the store and opening a held one."""

    def _key_blob(self, key: PrivateKey) -> tuple[bytes, int]:
        encryption: serialization.KeySerializationEncryption
        if not self._passphrase and self._query(
            "SELECT 1 FROM certs WHERE key_encrypted = 1 LIMIT 1"
        ):
            raise AuthError(f"this store's keys are encrypted: set {PASSWORD_ENV}")
        if self._passphrase:
            encryption = serialization.BestAvailableEncryption(self._passphrase)
        else:
            encryption = serialization.NoEncryption()
        blob = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption
        )
        return blob, 1 if self._passphrase else 0

    def private_key(self, thumbprint: str) -> PrivateKey | None:
        """The private key held for a certificate, or None.

        Raises AuthError when the key is encrypted and the store passphrase is missing or
        wrong.
        """
        row = self._query(
            "SELECT private_key, key_encrypted FROM certs WHERE thumbprint = ?",
            (thumbprint.upper(),),
        )
        if not row or row[0][0] is None:
            return None
        blob, encrypted = row[0]
        if encrypted and not self._passphrase:
            raise AuthError(
                f"the private key of {thumbprint.upper()} is encrypted: "
                f"set {PASSWORD_ENV} to the store passphrase"
            )
        try:
            key = serialization.load_der_private_key(blob, self._passphrase if encrypted else None)
        except ValueError as exc:
            raise AuthError(
                f"cannot decrypt the private key of {thumbprint.upper()}: "
                f"wrong store passphrase ({PASSWORD_ENV})"
            ) from exc
        return key  # type: ignore[return-value]

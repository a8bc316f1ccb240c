"""Signing: S/MIME signatures (message) and the signer choice (signers)."""

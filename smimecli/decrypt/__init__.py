"""Decryption: finding the key, opening the envelope, removing signature layers."""

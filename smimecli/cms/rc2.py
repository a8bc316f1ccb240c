"""RC2 (RFC 2268) for old S/MIME clients: any effective key size, CBC mode.

RC2 is obsolete, but Windows-era clients still send and expect it (RFC 8551 section 2.7
keeps it as a MAY for reading). OpenSSL and cryptography only offer it with a 128-bit key
and 128 effective bits, so the 40- and 64-bit variants that CMS names through the RFC 8018
"RC2 version" number are computed here in pure Python. :func:`rc2_cbc` picks cryptography's
C implementation when the parameters allow it (same results, verified by the tests).
"""

from __future__ import annotations

import struct
from typing import Protocol

from smimecli.errors import DataError

BLOCK_SIZE = 8

# RFC 2268 section 2: PITABLE, the key-expansion permutation derived from pi.
_PITABLE = bytes.fromhex(
    "d978f9c419ddb5ed28e9fd794aa0d89dc67e37832b76538e624c6488448bfba2"
    "179a59f587b34f1361456d8d09817d32bd8f40eb86b77b0bf09521225c6b4e82"
    "54d66593ce60b21c7356c014a78cf1dc1275ca1f3bbee4d1423dd430a33cb626"
    "6fbf0eda4669075727f21d9bbc944303f811c7f690ef3ee706c3d52fc8661ed7"
    "08e8eade8052eef784aa72ac354d6a2a961ad2715a1549744b9fd05e0418a4ec"
    "c2e0416e0f51cbcc2491af50a1f47039997c3a8523b8b47afc02365b25559731"
    "2d5dfa98e38a92ae05df2910676cbac9d300e6cfe19ea82c6316013f58e289a9"
    "0d38341bab33ffb0bb480c5fb9b1cd2ec5f3db47e5a59c770aa62068fe7fc1ad"
)

# RFC 2268 section 6: effective key bits (0..255) -> RC2 parameter version. Versions of 256
# and above are the effective key bits themselves.
_VERSION_TABLE = bytes.fromhex(
    "bd56eaf2a2f1ac2ab093d19c1b33fdd03004b6dc7ddf324bf7cb459b31bb215a"
    "419fe1d94a4d9edaa0682cc3275f80363eeefb951afecea834a913f0a63fd80c"
    "7824af2352c16717f56690e7e807b86048e61e53f392a4728c08156e860084fa"
    "f47f8a4219f6dbcd148d5012ba3c064eecb33511a1888e2b9499b77174d3e4bf"
    "3ade960ebc0aed77fc376b03798962c6d7c0d27c6a8b22a35b055d0275d561e3"
    "188f5551ad1f0b5e85e5c25763ca3d6cb4c5cc70b291590d4720c84f58e001e2"
    "1638c46f3b0f6546be7e2d7b82f940b51d73f8eb26c787972554b128aa989da5"
    "646d7ad4108144ef49d6ae2edd765c2fa71cc909699a83cf2939b9e94cff43ab"
)
_BITS_FROM_VERSION = {version: bits for bits, version in enumerate(_VERSION_TABLE)}

# RFC 2268 section 6: a parameter given as a bare IV means 32 effective key bits.
DEFAULT_EFFECTIVE_BITS = 32

_WORDS = struct.Struct("<4H")


def version_for_bits(effective_bits: int) -> int:
    """The RC2 parameter version that encodes ``effective_bits`` (40 -> 160, 128 -> 58)."""
    if not 1 <= effective_bits <= 1024:
        raise ValueError(f"RC2 effective key bits out of range: {effective_bits}")
    if effective_bits < 256:
        return _VERSION_TABLE[effective_bits]
    return effective_bits


def bits_for_version(version: int) -> int:
    """The effective key bits an RC2 parameter version stands for (58 -> 128)."""
    if 0 <= version < 256:
        return _BITS_FROM_VERSION[version]
    if 256 <= version <= 1024:
        return version
    raise DataError(f"RC2 parameter version {version} is not valid (RFC 2268 section 6)")


def expand_key(key: bytes, effective_bits: int) -> tuple[int, ...]:
    """The 64 16-bit subkeys K[0..63] of RFC 2268 section 2."""
    if not 1 <= len(key) <= 128:
        raise ValueError("RC2 key must be 1 to 128 bytes")
    if not 1 <= effective_bits <= 1024:
        raise ValueError("RC2 effective key bits must be 1 to 1024")
    length = len(key)
    buf = bytearray(128)
    buf[:length] = key
    for i in range(length, 128):
        buf[i] = _PITABLE[(buf[i - 1] + buf[i - length]) & 0xFF]
    t8 = (effective_bits + 7) // 8
    tm = 0xFF % (1 << (8 + effective_bits - 8 * t8))
    buf[128 - t8] = _PITABLE[buf[128 - t8] & tm]
    for i in range(127 - t8, -1, -1):
        buf[i] = _PITABLE[buf[i + 1] ^ buf[i + t8]]
    return struct.unpack("<64H", bytes(buf))


class RC2:
    """The RC2 block cipher on 8-byte blocks (RFC 2268 sections 3 and 4)."""

    def __init__(self, key: bytes, effective_bits: int) -> None:
        self._k = expand_key(key, effective_bits)

    def encrypt_block(self, block: bytes) -> bytes:
        """Encrypt one 8-byte block."""
        r0, r1, r2, r3 = _WORDS.unpack(block)
        k = self._k
        j = 0
        for rnd in range(16):
            # Mixing round (section 3.1).
            r0 = (r0 + k[j] + (r3 & r2) + (~r3 & r1)) & 0xFFFF
            r0 = ((r0 << 1) | (r0 >> 15)) & 0xFFFF
            r1 = (r1 + k[j + 1] + (r0 & r3) + (~r0 & r2)) & 0xFFFF
            r1 = ((r1 << 2) | (r1 >> 14)) & 0xFFFF
            r2 = (r2 + k[j + 2] + (r1 & r0) + (~r1 & r3)) & 0xFFFF
            r2 = ((r2 << 3) | (r2 >> 13)) & 0xFFFF
            r3 = (r3 + k[j + 3] + (r2 & r1) + (~r2 & r0)) & 0xFFFF
            r3 = ((r3 << 5) | (r3 >> 11)) & 0xFFFF
            j += 4
            if rnd in (4, 10):
                # Mashing round (section 3.2) after the 5th and 11th mixing rounds.
                r0 = (r0 + k[r3 & 63]) & 0xFFFF
                r1 = (r1 + k[r0 & 63]) & 0xFFFF
                r2 = (r2 + k[r1 & 63]) & 0xFFFF
                r3 = (r3 + k[r2 & 63]) & 0xFFFF
        return _WORDS.pack(r0, r1, r2, r3)

    def decrypt_block(self, block: bytes) -> bytes:
        """Decrypt one 8-byte block (section 4)."""
        r0, r1, r2, r3 = _WORDS.unpack(block)
        k = self._k
        j = 63
        for rnd in range(15, -1, -1):
            r3 = ((r3 >> 5) | (r3 << 11)) & 0xFFFF
            r3 = (r3 - k[j] - (r2 & r1) - (~r2 & r0)) & 0xFFFF
            r2 = ((r2 >> 3) | (r2 << 13)) & 0xFFFF
            r2 = (r2 - k[j - 1] - (r1 & r0) - (~r1 & r3)) & 0xFFFF
            r1 = ((r1 >> 2) | (r1 << 14)) & 0xFFFF
            r1 = (r1 - k[j - 2] - (r0 & r3) - (~r0 & r2)) & 0xFFFF
            r0 = ((r0 >> 1) | (r0 << 15)) & 0xFFFF
            r0 = (r0 - k[j - 3] - (r3 & r2) - (~r3 & r1)) & 0xFFFF
            j -= 4
            if rnd in (5, 11):
                # Reverse mashing before the 11th and 5th mixing rounds are undone.
                r3 = (r3 - k[r2 & 63]) & 0xFFFF
                r2 = (r2 - k[r1 & 63]) & 0xFFFF
                r1 = (r1 - k[r0 & 63]) & 0xFFFF
                r0 = (r0 - k[r3 & 63]) & 0xFFFF
        return _WORDS.pack(r0, r1, r2, r3)


class BlockMode(Protocol):
    """A streaming cipher context: cryptography's CipherContext has the same shape."""

    def update(self, data: bytes) -> bytes: ...

    def finalize(self) -> bytes: ...


class _PythonCBC:
    """CBC over the pure-Python RC2, without padding (the caller pads and unpads)."""

    def __init__(self, cipher: RC2, iv: bytes, *, decrypt: bool) -> None:
        if len(iv) != BLOCK_SIZE:
            raise DataError("RC2 IV must be 8 bytes")
        self._cipher = cipher
        self._prev = int.from_bytes(iv, "big")
        self._decrypt = decrypt
        self._pending = b""

    def update(self, data: bytes) -> bytes:
        data = self._pending + bytes(data)
        usable = len(data) - len(data) % BLOCK_SIZE
        self._pending = data[usable:]
        out = bytearray(usable)
        prev = self._prev
        if self._decrypt:
            block_op = self._cipher.decrypt_block
            for off in range(0, usable, BLOCK_SIZE):
                block = data[off : off + BLOCK_SIZE]
                plain = int.from_bytes(block_op(block), "big") ^ prev
                out[off : off + BLOCK_SIZE] = plain.to_bytes(BLOCK_SIZE, "big")
                prev = int.from_bytes(block, "big")
        else:
            block_op = self._cipher.encrypt_block
            for off in range(0, usable, BLOCK_SIZE):
                mixed = int.from_bytes(data[off : off + BLOCK_SIZE], "big") ^ prev
                block = block_op(mixed.to_bytes(BLOCK_SIZE, "big"))
                out[off : off + BLOCK_SIZE] = block
                prev = int.from_bytes(block, "big")
        self._prev = prev
        return bytes(out)

    def finalize(self) -> bytes:
        if self._pending:
            raise DataError("RC2 data is not a whole number of 8-byte blocks")
        return b""


def rc2_cbc(key: bytes, effective_bits: int, iv: bytes, *, decrypt: bool) -> BlockMode:
    """A streaming RC2-CBC context without padding.

    Uses cryptography's C implementation for 128-bit keys with 128 effective bits (the
    only case it supports) and the pure-Python cipher for every other size.
    """
    if len(key) == 16 and effective_bits == 128:
        from cryptography.hazmat.decrepit.ciphers.algorithms import RC2 as RC2_C
        from cryptography.hazmat.primitives.ciphers import Cipher, modes

        cipher = Cipher(RC2_C(key), modes.CBC(iv))
        return cipher.decryptor() if decrypt else cipher.encryptor()
    return _PythonCBC(RC2(key, effective_bits), iv, decrypt=decrypt)

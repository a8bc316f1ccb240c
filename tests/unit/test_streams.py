"""The helper threads of big messages: read-ahead, the cipher thread, the write-behind sync.

Each must give exactly what the plain loop gives, stop when its consumer stops, and hand an
error met in the thread to the caller, who turns it into one exit status (SPEC section 2).
"""

from __future__ import annotations

import errno
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smimecli import files, streams
from smimecli.cms.envelope import encrypted_pieces
from smimecli.errors import IOFailedError
from smimecli.files import atomic


def _chunks(count: int, size: int = 1000) -> Iterator[bytes]:
    for index in range(count):
        yield bytes([index % 256]) * size


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("smimecli-")}


def test_read_ahead_gives_every_chunk_in_order() -> None:
    expected = list(_chunks(50))
    assert list(streams.read_ahead(_chunks(50), after=0)) == expected
    assert list(streams.read_ahead(_chunks(50), after=10_000)) == expected  # thread after 10
    assert list(streams.read_ahead(_chunks(3), after=1 << 30)) == list(_chunks(3))  # no thread
    assert _threads() == set()


def test_read_ahead_hands_a_read_error_to_the_consumer() -> None:
    def failing() -> Iterator[bytes]:
        yield b"x" * 100
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        list(streams.read_ahead(failing(), after=0))
    assert _threads() == set()


def test_closing_read_ahead_early_stops_its_thread() -> None:
    reader = streams.read_ahead(_chunks(1000), after=0)
    assert next(reader) == bytes([0]) * 1000
    reader.close()
    assert _threads() == set()


def test_cipher_thread_matches_the_plain_loop() -> None:
    key, iv = bytes(range(32)), bytes(16)
    data = [os.urandom(n) for n in (1, 15, 16, 1 << 20, 3, (1 << 20) + 7, 100, 5 << 20)]
    data.append(bytes(-sum(len(d) for d in data) % 16))  # CBC without padding: whole blocks
    total = sum(len(d) for d in data)

    def run(length: int) -> bytes:
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        out = b"".join(bytes(p) for p in encrypted_pieces(encryptor, iter(data), length))
        return out + encryptor.finalize()

    assert run(total) == run(1)  # threaded (>= 4 MiB) and in the calling thread
    assert _threads() == set()


def test_cipher_thread_stops_when_the_writer_fails() -> None:
    encryptor = Cipher(algorithms.AES(bytes(16)), modes.CBC(bytes(16))).encryptor()
    pieces = encrypted_pieces(encryptor, _chunks(200, 1 << 16), 64 << 20)
    next(pieces)
    pieces.close()
    assert _threads() == set()


def test_write_behind_syncs_a_growing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(atomic._WriteBehind, "STEP", 1 << 16)
    monkeypatch.setattr("smimecli.files.atomic.os.fdatasync", counting)
    target = tmp_path / "out.bin"
    with files.atomic_output(target) as handle:
        for _ in range(40):
            handle.write(b"y" * (1 << 16))
            handle.flush()
            threading.Event().wait(0.005)
    assert target.read_bytes() == b"y" * (40 << 16)
    assert synced  # some data went to disk while the file was still being written
    assert _threads() == set()


def test_a_disk_error_in_the_write_behind_thread_fails_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic._WriteBehind, "STEP", 1)
    monkeypatch.setattr("smimecli.files.atomic.os.fdatasync", broken)
    target = tmp_path / "out.bin"
    with (
        pytest.raises(IOFailedError, match="I/O error writing"),
        files.atomic_output(target) as handle,
    ):
        handle.write(b"z" * 4096)
        handle.flush()
        threading.Event().wait(0.1)  # the thread polls every 10 ms
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either
    assert _threads() == set()


def test_no_sync_thread_without_fsync(tmp_path: Path) -> None:
    with files.atomic_output(tmp_path / "a", fsync=False) as handle:
        assert _threads() == set()
        handle.write(b"a")
    assert (tmp_path / "a").read_bytes() == b"a"


def test_in_memory_outputs_are_unaffected() -> None:
    # The helpers never need a file descriptor: BytesIO in, BytesIO out.
    assert b"".join(streams.read_ahead(iter([b"a", b"b"]), after=0)) == io.BytesIO(b"ab").read()

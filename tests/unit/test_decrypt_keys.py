"""smimecli.decrypt.keys: the key and certificate given with --key and --cert."""

from __future__ import annotations

import getpass
import io

import pytest

from smimecli.decrypt.keys import load_key_identity
from smimecli.errors import AuthError, UsageError
from tests.conftest import Pki
from tests.pki import PASSWORD


def test_load_key_identity_asks_only_when_allowed(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def answer(prompt: str = "") -> str:
        asked.append(prompt)
        return PASSWORD.decode()

    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr(getpass, "getpass", answer)
    with pytest.raises(AuthError):
        load_key_identity(pki.bob.pfx, ask=False)  # a library caller: never a prompt
    assert asked == []
    identity = load_key_identity(pki.bob.pfx)  # the command line: asks on a terminal
    assert asked == [f"Password for {pki.bob.pfx}: "]
    assert identity.cert == pki.bob.cert
    assert load_key_identity(pki.bob.pfx, password=PASSWORD, ask=False).cert == pki.bob.cert
    with pytest.raises(UsageError, match="does not belong to the private key"):
        load_key_identity(pki.bob.pfx, pki.alice.cert_pem, PASSWORD)

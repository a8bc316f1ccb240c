"""The daemon's library step: one plan per message, the encrypted copy written by the same
code as ``encrypt --rules`` (:func:`smimecli.encrypt.request.encrypt_planned`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimecli.serve.engine import Engine
from tests.conftest import Pki

MESSAGE = b"From: a@example.org\r\nTo: bob@example.com\r\nSubject: x\r\n\r\nSecret text.\r\n"


def test_a_split_reports_each_notice_once_in_the_plan_words(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "old"\nrecipients = ["bob@example.com"]\n'
        f'source = {{ kind = "cer", path = "{pki.bob.cert_pem}" }}\ncipher = "3des"\n\n'
        '[[rule]]\nname = "open"\nrecipients = ["*@else.example"]\n'
        'source = { kind = "dir", path = "empty" }\n'
    )
    (tmp_path / "empty").mkdir()
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGE)
    spool = tmp_path / "spool"
    spool.mkdir()
    engine = Engine.load(rules, None)
    split = engine.split_and_encrypt(str(src), ["bob@example.com", "eve@else.example"], str(spool))
    assert [c.kind for c in split.copies] == ["encrypted", "original"]
    assert split.cipher == "3des"
    assert [(n.code, n.address, n.text) for n in split.notices] == [
        (
            "plaintext-recipient",
            "eve@else.example",
            "eve@else.example gets the message without encryption",
        ),
        (
            "weak-cipher",
            None,
            "weak content cipher 3des: use it only for clients that read nothing else",
        ),
    ]
    encrypted = Path(split.copies[0].path).read_bytes()
    assert b"smime-type=enveloped-data" in encrypted and b"Secret text" not in encrypted
    assert caplog.records == [] and capsys.readouterr() == ("", "")

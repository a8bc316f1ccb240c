"""The one encrypt request: docs/python-api.md's example runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import Pki

ROOT = Path(__file__).resolve().parent.parent.parent


def _example() -> str:
    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    section = text.split("## One request for every mode", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_the_python_api_example_runs(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bob.pem").write_bytes(pki.bob.cert_pem.read_bytes())
    (tmp_path / "msg.eml").write_bytes(
        b"From: a@example.com\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nHello Bob.\r\n"
    )
    (tmp_path / "rules.toml").write_text(
        '[[rule]]\nname = "bob"\nrecipients = ["bob@example.com"]\n'
        'source = { kind = "cer", path = "bob.pem" }\n'
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(_example(), "docs/python-api.md", "exec"), {})
    for name in ("out.eml", "out2.eml"):
        data = (tmp_path / name).read_bytes()
        assert b"smime-type=enveloped-data" in data, name
        assert b"Hello Bob" not in data
    assert os.path.getsize(tmp_path / "out2.eml") > 0


def test_a_refused_policy_writes_nothing(tmp_path: Path) -> None:
    import io

    from smimecli import EncryptRequest, encrypt_one
    from smimecli.errors import RejectError

    (tmp_path / "empty").mkdir()
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "p"\nrecipients = ["*@partner.example"]\n'
        'source = { kind = "dir", path = "empty" }\non_missing_cert = "reject"\n'
    )
    out = io.BytesIO()
    request = EncryptRequest(rules=rules, envelope_recipients=("bob@partner.example",))
    with pytest.raises(RejectError):
        encrypt_one(
            request,
            io.BytesIO(b"From: a@x.example\r\nTo: bob@partner.example\r\n\r\nSecret\r\n"),
            out,
        )
    assert out.getvalue() == b""


PLAIN = b"From: a@example.com\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nHello Bob.\r\n"


def test_a_library_call_returns_notices_and_shows_nothing(
    pki: Pki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import io

    from smimecli import EncryptRequest, encrypt_one
    from smimecli.cms.recipients import Recipient
    from smimecli.rules.load import load_rules

    caplog.set_level("DEBUG")
    weak = EncryptRequest(recipients=(Recipient(pki.bob.cert),), cipher="3des")
    outcome = encrypt_one(weak, io.BytesIO(PLAIN), io.BytesIO())
    assert outcome.action == "encrypted"
    assert [(n.code, n.text) for n in outcome.notices] == [
        (
            "weak-cipher",
            "cipher 3des is weak; use it only for recipients whose clients cannot read AES",
        )
    ]
    (tmp_path / "empty").mkdir()
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "p"\nrecipients = ["*@partner.example"]\n'
        'source = { kind = "dir", path = "empty" }\non_missing_cert = "pass"\n'
    )
    request = EncryptRequest(rules=load_rules(rules), envelope_recipients=("eve@partner.example",))
    out = io.BytesIO()
    outcome = encrypt_one(request, io.BytesIO(PLAIN), out)
    assert outcome.action == "passed" and out.getvalue() == PLAIN
    text = "eve@partner.example gets the message without encryption"
    assert [(n.code, n.address, n.text) for n in outcome.notices] == [
        ("plaintext-recipient", "eve@partner.example", text)
    ]
    assert outcome.to_json()["warnings"] == [text]
    assert outcome.to_json()["notices"] == [
        {"code": "plaintext-recipient", "text": text, "address": "eve@partner.example"}
    ]
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")


def test_real_cms_passes_before_a_broken_rule_source_is_read(pki: Pki, tmp_path: Path) -> None:
    import io

    from smimecli import EncryptRequest, encrypt_one
    from smimecli.cms.recipients import Recipient
    from smimecli.errors import ConfigError
    from smimecli.rules.load import load_rules

    sealed = io.BytesIO()
    encrypt_one(EncryptRequest(recipients=(Recipient(pki.bob.cert),)), io.BytesIO(PLAIN), sealed)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "bob"\nrecipients = ["bob@example.com"]\n'
        'source = { kind = "pfx", path = "missing.pfx" }\n'
    )
    request = EncryptRequest(rules=load_rules(rules))
    out = io.BytesIO()
    outcome = encrypt_one(request, io.BytesIO(sealed.getvalue()), out)
    assert outcome.action == "already-encrypted" and out.getvalue() == sealed.getvalue()
    assert [n.code for n in outcome.notices] == ["already-encrypted"]
    with pytest.raises(ConfigError, match=r"missing\.pfx"):
        encrypt_one(request, io.BytesIO(PLAIN), io.BytesIO())

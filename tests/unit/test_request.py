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

"""The import placement policy and the export format choice, called as a library."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from smimecli.certs import export, importing
from smimecli.certs.store import Store
from smimecli.errors import UsageError
from tests.conftest import Pki
from tests.pki import PASSWORD


def test_pfx_goes_to_my_with_its_key_and_its_chain_to_ca(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = importing.load_import(pki.alice.pfx.read_bytes(), "alice.pfx", PASSWORD)
    assert [importing.target_store(e) for e in loaded.entries] == ["my", "ca"]
    assert [importing.target_store(e, "other") for e in loaded.entries] == ["other", "other"]
    plain = importing.load_import(pki.bob.cert_pem.read_bytes(), "bob.pem")
    with caplog.at_level(logging.DEBUG), Store.open(tmp_path / "s", create=True) as store:
        added = importing.add_to_store(store, [loaded, plain])
        assert [(a.file, a.store, a.has_key) for a in added] == [
            ("alice.pfx", "my", True),
            ("alice.pfx", "ca", False),
            ("bob.pem", "other", False),
        ]
        assert added[0].subject == "CN=Alice, E=alice@example.com"
        assert added[0].to_json()["thumbprint"] == pki.alice.thumbprint
        assert store.private_key(pki.alice.thumbprint) is not None
    assert caplog.records == [] and capsys.readouterr() == ("", "")


def test_a_failed_add_leaves_the_store_unchanged(pki: Pki, tmp_path: Path) -> None:
    good = importing.load_import(pki.alice.cert_pem.read_bytes(), "alice.pem")
    with Store.open(tmp_path / "s", create=True) as store:
        before = store.dump()
        with pytest.raises(UsageError, match="unknown store name"):
            importing.add_to_store(store, [good], "trusted")
        assert store.dump() == before


@pytest.mark.parametrize(
    ("name", "fmt", "chosen"),
    [
        ("a.cer", None, "cer"),
        ("a.CRT", None, "cer"),
        ("a.der", None, "cer"),
        ("a.pem", None, "pem"),
        ("a.p7c", None, "p7b"),
        ("a.sst", None, "sst"),
        ("a.p12", None, "pfx"),
        ("a.bin", "PEM", "pem"),
        ("-", "p7b", "p7b"),
    ],
)
def test_export_format_from_the_extension(name: str, fmt: str | None, chosen: str) -> None:
    assert export.choose_format(fmt, name) == chosen


def test_export_format_refusals() -> None:
    with pytest.raises(UsageError, match=r"cannot tell the export format from 'a\.bin'"):
        export.choose_format(None, Path("out/a.bin"))
    with pytest.raises(UsageError, match="give exactly one selector"):
        export.check_request("cer", 2)
    with pytest.raises(UsageError, match="needs --format pfx or pem"):
        export.check_request("p7b", 1, with_private_key=True)
    export.check_request("pem", 3, with_private_key=True)
    assert export.holds_private_key("pfx") and not export.holds_private_key("pem")

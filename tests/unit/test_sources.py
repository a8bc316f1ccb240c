"""Certificate sources: store, pfx, sst, cer, dir."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from smimecli.certs import sst
from smimecli.certs.formats import CertEntry
from smimecli.certs.sources import (
    CerSource,
    CertificateSource,
    DirSource,
    PfxSource,
    SstSource,
    StoreSource,
)
from smimecli.certs.store import Store
from smimecli.errors import ConfigError
from tests.conftest import Pki
from tests.pki import PASSWORD


def _thumbs(entries: Sequence[CertEntry]) -> list[str]:
    return [e.thumbprint for e in entries]


def test_store_source(tmp_path: Path, pki: Pki) -> None:
    with Store.open(tmp_path / "s", create=True) as store:
        store.add(pki.alice.cert)
        store.add(pki.bob.cert, key=pki.bob.key)
        source = StoreSource(store, "other")
        assert isinstance(source, CertificateSource)
        assert _thumbs(source.certificates()) == [pki.alice.thumbprint]
        assert _thumbs(source.for_address("Alice@Example.com")) == [pki.alice.thumbprint]
        assert source.for_address("bob@example.com") == []
        assert _thumbs(StoreSource(store, "my").for_address("bob@example.com")) == [
            pki.bob.thumbprint
        ]


def test_pfx_source(pki: Pki) -> None:
    source = PfxSource(pki.alice.pfx, PASSWORD)
    assert _thumbs(source.for_address("alice@example.com")) == [pki.alice.thumbprint]
    assert len(source.certificates()) == 2
    with pytest.raises(ConfigError, match="pfx source"):
        PfxSource(pki.alice.pfx, b"wrong").certificates()


def test_sst_source(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "a.sst"
    path.write_bytes(
        sst.write_sst(
            [(pki.alice.cert_der.read_bytes(), "A"), (pki.bob.cert_der.read_bytes(), None)]
        )
    )
    source = SstSource(path)
    assert _thumbs(source.for_address("bob@example.com")) == [pki.bob.thumbprint]
    assert "sst" in source.describe()


def test_cer_source_needs_exactly_one(tmp_path: Path, pki: Pki) -> None:
    assert _thumbs(CerSource(pki.carol_ec.cert_der).certificates()) == [pki.carol_ec.thumbprint]
    two = tmp_path / "two.pem"
    two.write_bytes(pki.alice.cert_pem.read_bytes() + pki.bob.cert_pem.read_bytes())
    with pytest.raises(ConfigError, match="exactly one"):
        CerSource(two).certificates()
    with pytest.raises(ConfigError, match="cannot read"):
        CerSource(tmp_path / "missing.cer").certificates()


def test_dir_source_skips_bad_files(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / "alice.cer").write_bytes(pki.alice.cert_der.read_bytes())
    (folder / "bob.pem").write_bytes(pki.bob.cert_pem.read_bytes())
    (folder / "dup.pem").write_bytes(pki.bob.cert_pem.read_bytes())
    (folder / "junk.txt").write_bytes(b"not a certificate")
    with caplog.at_level(logging.WARNING, logger="smimecli"):
        source = DirSource(folder)
        assert sorted(_thumbs(source.certificates())) == sorted(
            [pki.alice.thumbprint, pki.bob.thumbprint]
        )
    # The skipped file is a notice of the source: nothing is logged or printed.
    assert [n.code for n in source.notices] == ["skipped-file"]
    assert source.notices[0].text.startswith(f"skipped {folder / 'junk.txt'}: ")
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")
    assert _thumbs(source.for_address("alice@example.com")) == [pki.alice.thumbprint]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert DirSource(empty).certificates() == []
    with pytest.raises(ConfigError, match="not a folder"):
        DirSource(tmp_path / "nothing").certificates()

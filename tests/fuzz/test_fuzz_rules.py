"""Fuzzing the rules loader (SPEC section 3): damaged TOML (syntax, types, unknown keys,
deep nesting, odd encodings) must give a ConfigError (78) naming the file, never a crash."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given

from smimecli.errors import ConfigError
from smimecli.rules.load import load_rules
from tests.conftest import Pki
from tests.fuzz.mutate import fuzz_settings, mutated, only_smime_errors, quiet_library, record

RULES = b"""[defaults]
cipher = "aes256"
key_transport = "rsa"
oaep_hash = "sha256"
convert_tnef = true
on_missing_cert = "pass"
require_trusted = false

[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = { kind = "cer", path = "alice.cer" }
match = "any"

[[rule]]
name = "partners"
recipients = ["*@partner.example", "j?hn@example.org"]
source = { kind = "dir", path = "certs" }
match = "email"
cipher = "aes128"
on_missing_cert = "reject"
"""


def test_rules_loader_damaged(pki: Pki, tmp_path: Path) -> None:
    """Damaged rules files: a RuleSet (whose sources open or fail with 78) or a ConfigError."""
    (tmp_path / "alice.cer").write_bytes(pki.alice.cert_der.read_bytes())
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "carol.pem").write_bytes(pki.carol_ec.cert_pem.read_bytes())
    target = tmp_path / "rules.toml"
    target.write_bytes(RULES)
    load_rules(target, store_dir=tmp_path / "store").open_all()  # the seed is good
    outcomes = Counter[str]()

    @fuzz_settings(250)
    @given(mutated([RULES], max_mutations=6))
    def run(data: bytes) -> None:
        target.write_bytes(data)

        def call() -> None:
            rules = load_rules(target, store_dir=tmp_path / "store")
            rules.open_all()

        outcomes[only_smime_errors(call)] += 1

    with quiet_library():
        run()
    record("rules", outcomes)
    assert outcomes["ConfigError"] >= 10


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 5000 + "]" * 5000,
        "a = " + "{b = " * 3000 + "1" + "}" * 3000,
        "[[rule]]\n" * 20000,
        'name = "' + "x" * 1_000_000 + '"',
    ],
)
def test_rules_pathological(tmp_path: Path, text: str) -> None:
    """Deep nesting and huge values are configuration errors, not RecursionError or 70."""
    target = tmp_path / "rules.toml"
    target.write_text(text)
    with pytest.raises(ConfigError):
        load_rules(target, store_dir=tmp_path / "store")

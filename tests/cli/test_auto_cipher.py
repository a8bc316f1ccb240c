"""``cipher = "auto"``: AES-GCM only when every encrypted recipient announced it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import Pki, Result
from tests.messages import message
from tests.pki import PASSWORD
from tests.rulesfiles import rules_file

if TYPE_CHECKING:
    from cryptography import x509

Cli = Callable[..., Result]
RULES = (
    '[[rule]]\nname = "partners"\nrecipients = ["*@example.com"]\n'
    'source = { kind = "store", store = "other" }\ncipher = "auto"\n'
)


def _harvest(cli: Cli, tmp_path: Path, pfx: Path, sender: str) -> None:
    """Import a message the identity signed: the store records its SMIMECapabilities."""
    signed = tmp_path / f"{sender}.eml"
    done = cli(
        ["sign", "--signer-pfx", pfx, "--password-env", "PW", "-o", signed],
        input=message("x@example.org", sender=sender, subject="hi"),
        env={"PW": PASSWORD.decode()},
    )
    assert done.exit_code == 0, done.output
    assert cli(["certs", "import", signed]).exit_code == 0


def _rules(tmp_path: Path) -> Path:
    return rules_file(tmp_path, RULES)


def _test(cli: Cli, rules: Path) -> tuple[str, dict[str, object]]:
    args = ["rules", "test", "partners", "--rules", rules, "--recipient"]
    both = ["alice@example.com", "--recipient", "bob@example.com"]
    plain = cli([*args, *both])
    assert plain.exit_code == 0, plain.output
    done = cli([*args, *both, "--json"])
    assert done.exit_code == 0, done.output
    return plain.stdout.decode(), json.loads(done.stdout)["rules"][0]


def test_auto_one_recipient_without_gcm_gets_aes256(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    _harvest(cli, tmp_path, pki.alice.pfx, "alice@example.com")
    assert cli(["certs", "import", pki.bob.cert_pem]).exit_code == 0  # no capabilities
    text, report = _test(cli, _rules(tmp_path))
    assert report["cipher"] == "aes256"
    assert report["cipher_reason"] == "auto: bob@example.com announced no capabilities"
    assert "  cipher: aes256 (auto: bob@example.com announced no capabilities)" in text
    assert "aes256, RSA PKCS#1 v1.5" in text


def test_auto_all_recipients_with_gcm_get_aes256_gcm(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    _harvest(cli, tmp_path, pki.alice.pfx, "alice@example.com")
    _harvest(cli, tmp_path, pki.bob.pfx, "bob@example.com")
    rules = _rules(tmp_path)
    text, report = _test(cli, rules)
    assert report["cipher"] == "aes256-gcm"
    assert "  cipher: aes256-gcm (auto: all 2 recipients announced aes256-gcm)" in text
    # encrypt --rules uses the same choice: AuthEnvelopedData (RFC 5083).
    out = tmp_path / "enc.eml"
    msg = b"From: carol@example.org\nTo: alice@example.com, bob@example.com\nSubject: s\n\nhi\n"
    done = cli(["encrypt", "--rules", rules, "-o", out], input=msg)
    assert done.exit_code == 0, done.output
    assert b"smime-type=authEnveloped-data" in out.read_bytes()


def test_auto_lab_certificate_reads_like_a_signature(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    """A recipient known by an issue-user certificate announces what one known by a signed
    message announces: both carry the list ``sign`` writes, so auto picks AES-GCM."""
    _harvest(cli, tmp_path, pki.alice.pfx, "alice@example.com")
    assert cli(["gen-root"]).exit_code == 0
    pem = tmp_path / "bob.pem"
    done = cli(
        [
            "issue-user",
            "--signer",
            "Test Root V1",
            "--email",
            "bob@example.com",
            "--no-store",
            "--out-pem",
            pem,
        ]
    )
    assert done.exit_code == 0, done.output
    assert cli(["certs", "import", pem]).exit_code == 0
    text, report = _test(cli, _rules(tmp_path))
    assert report["cipher"] == "aes256-gcm"
    assert "  cipher: aes256-gcm (auto: all 2 recipients announced aes256-gcm)" in text


def _cert(capabilities: bytes | None) -> x509.Certificate:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if capabilities is not None:
        oid = x509.ObjectIdentifier("1.2.840.113549.1.9.15")
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, capabilities), False)
    return builder.sign(key, hashes.SHA256())


def test_auto_reads_the_certificate_extension(tmp_path: Path) -> None:
    """Without a harvested record, the certificate's SMIMECapabilities extension counts."""
    from asn1crypto import cms

    from smimecli.lab import smime_capabilities_der
    from smimecli.rules.decision import Outcome, RecipientPlan
    from smimecli.rules.model import RuleSet
    from smimecli.rules.plan import auto_cipher

    gcm = cms.SMIMECapabilites([{"capability_id": "2.16.840.1.101.3.4.1.46"}]).dump()
    cbc_only = cms.SMIMECapabilites([{"capability_id": "2.16.840.1.101.3.4.1.42"}]).dump()
    rules = RuleSet(tmp_path / "rules.toml", [])

    def plan(address: str, der: bytes | None) -> RecipientPlan:
        return RecipientPlan(address, None, Outcome.ENCRYPTED, "", cert=_cert(der))

    lab = plan("lab@example.com", smime_capabilities_der())
    assert auto_cipher(rules, [plan("a@example.com", gcm), lab]) == (
        "aes256-gcm",
        "auto: all 2 recipients announced aes256-gcm",
    )
    cbc = plan("cbc@example.com", cbc_only)
    assert auto_cipher(rules, [plan("a@example.com", gcm), cbc]) == (
        "aes256",
        "auto: cbc@example.com did not announce AES-GCM",
    )
    assert auto_cipher(rules, [plan("a@example.com", gcm), plan("b@example.com", gcm)]) == (
        "aes256-gcm",
        "auto: all 2 recipients announced aes256-gcm",
    )
    assert auto_cipher(rules, [plan("n@example.com", None)])[0] == "aes256"


def test_auto_unknown_value_still_exit_78(cli: Cli, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.replace('"auto"', '"automatic"'))
    done = cli(["rules", "check", "--rules", rules])
    assert done.exit_code == 78
    assert "rules.toml:5: rule 'partners', key 'cipher': unknown cipher 'automatic'" in done.stderr
    assert "auto" in done.stderr

"""The recipient -> rule -> certificate -> outcome plan (SPEC section 3)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smimecli.certs.formats import CertEntry
from smimecli.errors import ConfigError, DataError, RejectError, TempFailError
from smimecli.rules.decision import Outcome, Plan, RecipientPlan
from smimecli.rules.dryrun import run_rules_test
from smimecli.rules.load import load_rules
from smimecli.rules.message import encrypt_with_rules, header_recipients
from smimecli.rules.plan import plan_recipients
from tests.conftest import Pki
from tests.messages import message
from tests.rulesfiles import policy_rule_text, policy_rules, rules_file

NOW = dt.datetime.now(dt.UTC)


def cert_dir(folder: Path, name: str, *certs: x509.Certificate) -> Path:
    target = folder / name
    target.mkdir(exist_ok=True)
    for cert in certs:
        stem = cert.fingerprint(hashes.SHA1()).hex()[:12]
        (target / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return target


def odd_cert(
    pki: Pki,
    email: str,
    *,
    eku_oid: x509.ObjectIdentifier | None = None,
    days: int = 365,
    key_encipherment: bool = True,
) -> x509.Certificate:
    """A certificate with what tests.pki cannot make: a foreign EKU, no keyEncipherment."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.EMAIL_ADDRESS, email),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Odd"),
                ]
            )
        )
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=10))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=key_encipherment,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if eku_oid is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku_oid]), critical=False)
    return builder.sign(pki.ca.key, hashes.SHA256())


def one(plan: Plan, address: str) -> RecipientPlan:
    return next(r for r in plan.recipients if r.address == address)


# --- certificate choice ---------------------------------------------------------------------


def test_cer_source_match_any(tmp_path: Path, pki: Pki) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "alice"
recipients = ["ali@other.example"]
source = {{ kind = "cer", path = "{pki.alice.cert_der}" }}
match = "any"
""",
        )
    )
    plan = plan_recipients(rules, ["ali@other.example"])
    recipient = one(plan, "ali@other.example")
    assert recipient.outcome is Outcome.ENCRYPTED
    assert recipient.thumbprint == pki.alice.thumbprint
    assert plan.cipher == "aes256" and plan.decision == "encrypt"


def test_match_email_refuses_a_certificate_for_another_address(tmp_path: Path, pki: Pki) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.bob.cert_pem}" }}
""",
        )
    )
    recipient = one(plan_recipients(rules, ["alice@example.com"]), "alice@example.com")
    assert recipient.outcome is Outcome.PASSED
    assert recipient.cert is None
    assert "does not name alice@example.com" in recipient.reason
    assert recipient.turned_down[0].thumbprint == pki.bob.thumbprint


def test_longest_valid_wins(tmp_path: Path, pki: Pki) -> None:
    short = pki.ca.issue("Alice Short", "alice@example.com", days=100)
    long = pki.ca.issue("Alice Long", "alice@example.com", days=700)
    mid = pki.ca.issue("Alice Mid", "alice@example.com", days=400)
    folder = cert_dir(tmp_path, "certs", short.cert, long.cert, mid.cert)
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "dir"
recipients = ["*@example.com"]
source = {{ kind = "dir", path = "{folder.name}" }}
""",
        )
    )
    recipient = one(plan_recipients(rules, ["Alice@Example.com"]), "Alice@Example.com")
    assert recipient.outcome is Outcome.ENCRYPTED
    assert recipient.thumbprint == long.thumbprint
    assert {t.thumbprint for t in recipient.turned_down} == {short.thumbprint, mid.thumbprint}
    assert "valid the longest of 3" in recipient.reason


@pytest.mark.parametrize("flaw", ["expired", "not-yet-valid", "no-email-eku", "no-key-enc"])
def test_unusable_certificate_never_chosen(tmp_path: Path, pki: Pki, flaw: str) -> None:
    if flaw == "expired":
        bad = pki.ca.issue(
            "Old",
            "alice@example.com",
            not_before=NOW - dt.timedelta(days=400),
            not_after=NOW - dt.timedelta(days=1),
        ).cert
        reason = "expired"
    elif flaw == "not-yet-valid":
        bad = pki.ca.issue(
            "Future",
            "alice@example.com",
            not_before=NOW + dt.timedelta(days=2),
            not_after=NOW + dt.timedelta(days=5000),
        ).cert
        reason = "not yet valid"
    elif flaw == "no-email-eku":
        bad = odd_cert(pki, "alice@example.com", eku_oid=ExtendedKeyUsageOID.CLIENT_AUTH, days=5000)
        reason = "no emailProtection"
    else:
        bad = odd_cert(pki, "alice@example.com", key_encipherment=False, days=5000)
        reason = "key encipherment"
    alone = cert_dir(tmp_path, "alone", bad)
    both = cert_dir(tmp_path, "both", bad, pki.alice.cert)
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "alone"
recipients = ["alice@example.com"]
source = {{ kind = "dir", path = "{alone.name}" }}
""",
        )
    )
    recipient = one(plan_recipients(rules, ["alice@example.com"]), "alice@example.com")
    assert recipient.outcome is Outcome.PASSED
    assert reason in recipient.reason
    assert any(reason in r for r in recipient.turned_down[0].reasons)

    # With a good certificate beside it, the good one is chosen (the flawed one even
    # though it may be valid longer).
    rules2 = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "both"
recipients = ["alice@example.com"]
source = {{ kind = "dir", path = "{both.name}" }}
""",
        )
    )
    recipient = one(plan_recipients(rules2, ["alice@example.com"]), "alice@example.com")
    assert recipient.thumbprint == pki.alice.thumbprint
    assert any(reason in r for t in recipient.turned_down for r in t.reasons)


def test_first_matching_rule_decides(tmp_path: Path, pki: Pki) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "nobody"
recipients = ["alice@example.com"]
source = {{ kind = "dir", path = "empty" }}

[[rule]]
name = "everybody"
recipients = ["*@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}
""",
        )
    )
    plan = plan_recipients(rules, ["alice@example.com", "x@example.net"])
    alice = one(plan, "alice@example.com")
    assert alice.rule is not None and alice.rule.name == "nobody"
    assert alice.outcome is Outcome.PASSED  # the later rule would have had a certificate
    stranger = one(plan, "x@example.net")
    assert stranger.rule is None and stranger.outcome is Outcome.PASSED
    assert plan.decision == "pass"


def test_duplicate_recipients_count_once(tmp_path: Path, pki: Pki) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "a"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}
""",
        )
    )
    plan = plan_recipients(rules, ["alice@example.com", "ALICE@example.com", " alice@example.com"])
    assert len(plan.recipients) == 1


def test_cipher_of_first_rule_in_file_order_and_own_key_transport(tmp_path: Path, pki: Pki) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "bob"
recipients = ["bob@example.com"]
source = {{ kind = "cer", path = "{pki.bob.cert_pem}" }}
cipher = "aes128"
key_transport = "rsa-oaep"
oaep_hash = "sha384"
convert_tnef = false

[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}
cipher = "aes192"
convert_tnef = true
""",
        )
    )
    # Recipient order does not matter: file order does.
    plan = plan_recipients(rules, ["alice@example.com", "bob@example.com"])
    assert plan.cipher == "aes128"
    assert plan.cipher_rule is not None and plan.cipher_rule.name == "bob"
    assert one(plan, "bob@example.com").algorithm == "rsa-oaep/sha384"
    assert one(plan, "alice@example.com").algorithm == "rsa"
    assert plan.convert_tnef is True  # any rule asking is enough
    assert any("asks for aes192" in w for w in plan.warnings)
    # Without bob's certificate, alice's rule gives the cipher.
    plan = plan_recipients(rules, ["alice@example.com"])
    assert plan.cipher == "aes192"


def test_ec_recipient_uses_ecdh(tmp_path: Path, pki: Pki) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "carol"
recipients = ["carol@example.com"]
source = {{ kind = "cer", path = "{pki.carol_ec.cert_pem}" }}
key_transport = "rsa-oaep"
""",
        )
    )
    carol = one(plan_recipients(rules, ["carol@example.com"]), "carol@example.com")
    assert carol.outcome is Outcome.ENCRYPTED and carol.algorithm == "ecdh"
    assert any("ECDH" in w for w in carol.warnings)


@pytest.mark.parametrize(
    ("cipher", "text"),
    [
        ("3des", "weak content cipher"),
        ("rc2-40", "weak content cipher"),
        ("aes256-gcm", "AuthEnvelopedData"),
        ("aes256", None),
    ],
)
def test_cipher_warnings(tmp_path: Path, pki: Pki, cipher: str, text: str | None) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "a"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}
cipher = "{cipher}"
""",
        )
    )
    plan = plan_recipients(rules, ["alice@example.com"])
    if text is None:
        assert plan.warnings == []
    else:
        assert any(text in w for w in plan.warnings), plan.warnings


def test_oaep_sha1_and_expiry_warnings(tmp_path: Path, pki: Pki) -> None:
    soon = pki.ca.issue("Soon", "soon@example.com", days=10)
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "soon"
recipients = ["soon@example.com"]
source = {{ kind = "cer", path = "{soon.cert_pem}" }}
key_transport = "rsa-oaep"
oaep_hash = "sha1"
""",
        )
    )
    recipient = one(plan_recipients(rules, ["soon@example.com"]), "soon@example.com")
    assert recipient.outcome is Outcome.ENCRYPTED
    assert any("expires" in w and "in 9 days" in w for w in recipient.warnings), recipient.warnings
    assert any("SHA-1" in w for w in recipient.warnings)


def test_match_any_source_with_several_certificates_needs_thumbprint(
    tmp_path: Path, pki: Pki
) -> None:
    folder = cert_dir(tmp_path, "certs", pki.alice.cert, pki.bob.cert)
    text = f"""
[[rule]]
name = "pick"
recipients = ["team@example.com"]
source = {{ kind = "dir", path = "{folder.name}" }}
match = "any"
"""
    rules = load_rules(rules_file(tmp_path, text))
    with pytest.raises(ConfigError, match=r"rule 'pick', key 'source.thumbprint'"):
        rules.open_all()
    rules = load_rules(
        rules_file(
            tmp_path, text.replace('" }', f'", thumbprint = "{pki.bob.thumbprint[:10].lower()}" }}')
        )
    )
    recipient = one(plan_recipients(rules, ["team@example.com"]), "team@example.com")
    assert recipient.thumbprint == pki.bob.thumbprint


def test_pfx_source_with_chain_and_password(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RULES_PFX_PW", "test-password")
    text = f"""
[[rule]]
name = "p"
recipients = ["boss@example.com"]
source = {{ kind = "pfx", path = "{pki.alice.pfx}", password_env = "RULES_PFX_PW" }}
match = "any"
"""
    rules = load_rules(rules_file(tmp_path, text))
    rules.open_all()  # the CA certificate of the chain does not count as a second one
    recipient = one(plan_recipients(rules, ["boss@example.com"]), "boss@example.com")
    assert recipient.thumbprint == pki.alice.thumbprint
    monkeypatch.setenv("RULES_PFX_PW", "wrong")
    with pytest.raises(ConfigError, match=r"rule 'p', key 'source'.*"):
        load_rules(rules_file(tmp_path, text)).open_all()
    monkeypatch.delenv("RULES_PFX_PW")
    with pytest.raises(ConfigError, match=r"rule 'p', key 'source.password_env'.*RULES_PFX_PW"):
        load_rules(rules_file(tmp_path, text)).open_all()


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        ('{ kind = "cer", path = "missing.cer" }', "does not exist"),
        ('{ kind = "cer", path = "garbage.cer" }', "cer"),
        ('{ kind = "sst", path = "garbage.cer" }', "sst"),
        ('{ kind = "dir", path = "garbage.cer" }', "not a folder"),
    ],
)
def test_unreadable_sources_are_config_errors(tmp_path: Path, source: str, detail: str) -> None:
    (tmp_path / "garbage.cer").write_bytes(b"\x30\x82\xff\xffnot a certificate")
    path = rules_file(
        tmp_path,
        f"""
[[rule]]
name = "broken"
recipients = ["a@example.com"]
source = {source}
""",
    )
    rules = load_rules(path)
    with pytest.raises(ConfigError) as info:
        rules.open_all()
    message = info.value.message
    assert message.startswith(f"{path}:2: rule 'broken', key 'source"), message
    assert detail in message


def test_empty_dir_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    rules = load_rules(
        rules_file(
            tmp_path,
            """
[[rule]]
name = "e"
recipients = ["a@example.com"]
source = { kind = "dir", path = "empty" }
""",
        )
    )
    rules.open_all()
    recipient = one(plan_recipients(rules, ["a@example.com"]), "a@example.com")
    assert recipient.outcome is Outcome.PASSED
    assert "no certificate for a@example.com in dir" in recipient.reason


# --- the store and require_trusted ----------------------------------------------------------


def test_store_source_and_require_trusted(tmp_path: Path, pki: Pki) -> None:
    from smimecli.certs.store import Store

    store_dir = tmp_path / "store"
    with Store.open(store_dir, create=True) as store:
        store.add(pki.alice.cert, store_name="other")
        store.add(pki.bob.cert, store_name="other")
    text = """
[defaults]
require_trusted = true

[[rule]]
name = "store"
recipients = ["*@example.com"]
source = { kind = "store", store = "other" }
"""
    rules = load_rules(rules_file(tmp_path, text), store_dir=store_dir)
    plan = plan_recipients(rules, ["alice@example.com", "carol@example.com"])
    alice = one(plan, "alice@example.com")
    assert alice.outcome is Outcome.PASSED
    assert "does not chain to a trusted root" in alice.reason
    carol = one(plan, "carol@example.com")
    assert "no certificate for carol@example.com in store" in carol.reason

    with Store.open(store_dir, create=True) as store:
        store.add(pki.ca.cert, store_name="root")
    rules = load_rules(rules_file(tmp_path, text), store_dir=store_dir)
    alice = one(plan_recipients(rules, ["alice@example.com"]), "alice@example.com")
    assert alice.outcome is Outcome.ENCRYPTED and alice.thumbprint == pki.alice.thumbprint


def test_match_any_store_source_uses_the_thumbprint_index(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smimecli.certs.store import Store

    store_dir = tmp_path / "store"
    with Store.open(store_dir, create=True) as store:
        store.add(pki.ca.cert, store_name="other")
        store.add(pki.alice.cert, store_name="other")
        store.add(pki.bob.cert, store_name="other")
        store.add(pki.carol_ec.cert, store_name="my")  # another store: never a candidate
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "team"
recipients = ["team@example.com"]
source = {{ kind = "store", store = "other", thumbprint = "{pki.bob.thumbprint[:12]}" }}
match = "any"
""",
        ),
        store_dir=store_dir,
    )

    def listed(self: Store, store_name: str | None = None) -> list[CertEntry]:
        raise AssertionError("the whole store was listed")

    monkeypatch.setattr(Store, "certificates", listed)
    team = one(plan_recipients(rules, ["team@example.com"]), "team@example.com")
    assert team.outcome is Outcome.ENCRYPTED and team.thumbprint == pki.bob.thumbprint
    assert team.turned_down == []
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "team"
recipients = ["team@example.com"]
source = {{ kind = "store", store = "other", thumbprint = "{pki.carol_ec.thumbprint[:12]}" }}
match = "any"
""",
        ),
        store_dir=store_dir,
    )
    team = one(plan_recipients(rules, ["team@example.com"]), "team@example.com")
    assert team.outcome is Outcome.PASSED
    assert f"store other holds no certificate {pki.carol_ec.thumbprint[:12]}" in team.reason


# --- policies and the message ---------------------------------------------------------------

MESSAGE = message(
    "Alice <alice@example.com>, nobody@example.com",
    b"Hello.\n",
    sender="sender@example.net",
    cc='"Bob, B." <bob@example.com>',
    bcc="hidden@example.com",
    subject="plan",
    content_type="text/plain",
)


def test_header_recipients() -> None:
    from smimecli.mime import parse_header_block

    headers, _ = parse_header_block(MESSAGE)
    assert header_recipients(headers) == [
        "alice@example.com",
        "nobody@example.com",
        "bob@example.com",
        "hidden@example.com",
    ]


def _policy_rules(folder: Path, pki: Pki, policy: str) -> Path:
    """Rule 'known' for alice@example.com, rule 'unknown' for nobody@example.com."""
    return policy_rules(folder, pki.alice.cert_pem, policy, known="known", unknown="unknown")


@pytest.mark.parametrize(
    ("policy", "error"), [("reject", RejectError), ("tempfail", TempFailError)]
)
def test_reject_and_tempfail_write_nothing(
    tmp_path: Path, pki: Pki, policy: str, error: type
) -> None:
    path = _policy_rules(tmp_path, pki, policy)
    out = io.BytesIO()
    with pytest.raises(error) as info:
        encrypt_with_rules(io.BytesIO(MESSAGE), out, path, None, tmp_path / "store")
    assert out.getvalue() == b""
    assert "nobody@example.com" in str(info.value) and "'unknown'" in str(info.value)


def test_reject_wins_over_tempfail(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "empty").mkdir()
    path = rules_file(
        tmp_path,
        policy_rule_text(pki.alice.cert_pem, "reject", known="known", unknown="unknown")
        + policy_rule_text(
            pki.alice.cert_pem, "tempfail", known="k2", unknown="u2", pattern="other@example.com"
        ),
    )
    rules = load_rules(path)
    plan = plan_recipients(rules, ["other@example.com", "nobody@example.com"])
    assert plan.decision == "reject"
    with pytest.raises(RejectError):
        plan.raise_for_policy()


def test_on_missing_cert_override(tmp_path: Path, pki: Pki) -> None:
    path = _policy_rules(tmp_path, pki, "pass")
    rules = load_rules(path)
    assert plan_recipients(rules, ["nobody@example.com"]).decision == "pass"
    plan = plan_recipients(rules, ["nobody@example.com"], on_missing_cert="tempfail")
    assert plan.decision == "tempfail"
    # Recipients no rule matches are left alone whatever the override.
    plan = plan_recipients(rules, ["x@example.net"], on_missing_cert="reject")
    assert plan.decision == "pass"


@pytest.mark.parametrize("crlf", [False, True])
def test_pass_through_byte_for_byte(tmp_path: Path, pki: Pki, crlf: bool) -> None:
    path = _policy_rules(tmp_path, pki, "pass")
    message = MESSAGE.replace(b"\n", b"\r\n") if crlf else MESSAGE
    out = io.BytesIO()
    outcome = encrypt_with_rules(
        io.BytesIO(message), out, path, ["nobody@example.com", "x@example.net"], tmp_path / "s"
    )
    assert outcome.action == "passed"
    assert out.getvalue() == message  # Bcc and all


def test_already_encrypted_passes_whatever_the_policy(tmp_path: Path, pki: Pki) -> None:
    path = _policy_rules(tmp_path, pki, "reject")
    message = (
        b"To: nobody@example.com\nContent-Type: application/pkcs7-mime; "
        b"smime-type=enveloped-data; name=smime.p7m\n\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\n"
    )
    out = io.BytesIO()
    outcome = encrypt_with_rules(io.BytesIO(message), out, path, None, tmp_path / "s")
    assert outcome.action == "already-encrypted"
    assert out.getvalue() == message


def test_encrypt_with_rules_reports_each_algorithm_warning_once(
    tmp_path: Path,
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = rules_file(
        tmp_path,
        f"""
[[rule]]
name = "old"
recipients = ["alice@example.com", "bob@example.com"]
source = {{ kind = "dir", path = "{cert_dir(tmp_path, "certs", pki.alice.cert, pki.bob.cert)}" }}
cipher = "rc2-40"
key_transport = "rsa-oaep"
oaep_hash = "sha1"
""",
    )
    with caplog.at_level("WARNING", logger="smimecli"):
        outcome = encrypt_with_rules(
            io.BytesIO(MESSAGE), io.BytesIO(), path, ["alice@example.com", "bob@example.com"], None
        )
    assert outcome.action == "encrypted"
    assert outcome.warnings == [
        "RSA-OAEP with SHA-1 for alice@example.com is weak (old clients only)",
        "RSA-OAEP with SHA-1 for bob@example.com is weak (old clients only)",
        "weak content cipher rc2-40: use it only for clients that read nothing else",
    ]
    codes = [(n.code, n.address) for n in outcome.notices]
    assert codes == [
        ("oaep-sha1", "alice@example.com"),
        ("oaep-sha1", "bob@example.com"),
        ("weak-cipher", None),
    ]
    # A library call shows nothing itself: the caller shows the notices.
    assert caplog.records == []
    assert capsys.readouterr().err == ""


def test_encrypt_with_rules_without_a_store_folder(tmp_path: Path, pki: Pki) -> None:
    path = rules_file(
        tmp_path,
        """
[[rule]]
name = "store"
recipients = ["alice@example.com"]
source = { kind = "store", store = "other" }
""",
    )
    with pytest.raises(ConfigError, match="needs a certificate store folder"):
        encrypt_with_rules(io.BytesIO(MESSAGE), io.BytesIO(), path, ["alice@example.com"], None)


def test_a_batch_worker_loads_rules_and_sources_once(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smimecli.certs import sources
    from smimecli.encrypt.batch import BatchSettings, _Worker

    folder = cert_dir(tmp_path, "certs", pki.alice.cert)
    (folder / "junk.pem").write_bytes(b"junk")
    path = rules_file(
        tmp_path,
        f"""
[[rule]]
name = "d"
recipients = ["x@example.net"]
source = {{ kind = "dir", path = "{folder.name}" }}
""",
    )
    loads: list[Path] = []
    real_load = sources.DirSource._load

    def counting_load(self: sources.DirSource) -> list[CertEntry]:
        loads.append(self.path)
        return real_load(self)

    monkeypatch.setattr(sources.DirSource, "_load", counting_load)
    settings = BatchSettings(rules=path, store_dir=tmp_path, envelope_recipients=("x@example.net",))
    worker = _Worker(settings)
    for number in range(3):
        src = tmp_path / f"m{number}.eml"
        src.write_bytes(MESSAGE)
        result = worker.run((src, tmp_path / f"out{number}.eml"))
        assert result.status == 0, result.error
    assert loads == [folder]


# --- rules test (library) -------------------------------------------------------------------


def test_rules_test_wildcards_use_source_addresses(tmp_path: Path, pki: Pki) -> None:
    expired = pki.ca.issue(
        "Eve Old",
        "eve@example.com",
        not_before=NOW - dt.timedelta(days=9),
        not_after=NOW - dt.timedelta(days=1),
    )
    folder = cert_dir(tmp_path, "certs", pki.alice.cert, pki.bob.cert, expired.cert)
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "team"
recipients = ["*@example.com", "j?hn@example.org"]
source = {{ kind = "dir", path = "{folder.name}" }}
""",
        )
    )
    report = run_rules_test(rules, ["team"])
    (rule_report,) = report.reports
    addresses = [r.address for r in rule_report.plan.recipients]
    # eve's only certificate is expired: not offered; j?hn has none: one example address.
    assert addresses == ["alice@example.com", "bob@example.com", "jxhn@example.org"]
    assert not report.all_encrypted
    assert any("example address" in w for w in rule_report.warnings)


def _shadowed_rules(pki: Pki) -> str:
    """'all' (bob's certificate for *@example.com) before 'alice', which it shadows."""
    return f"""
[[rule]]
name = "all"
recipients = ["*@example.com"]
source = {{ kind = "cer", path = "{pki.bob.cert_pem}" }}

[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}
"""


def test_rules_test_reports_shadowing(tmp_path: Path, pki: Pki) -> None:
    rules = load_rules(rules_file(tmp_path, _shadowed_rules(pki)))
    report = run_rules_test(rules, ["alice"])
    assert any("shadowed" in w and "'all'" in w for w in report.warnings)
    alice = report.reports[0].plan.recipients[0]
    assert alice.rule is not None and alice.rule.name == "all"
    assert any("never sees it" in w for w in alice.warnings)


def test_rules_test_names_once_each_and_lists_tested_recipients(tmp_path: Path, pki: Pki) -> None:
    rules = load_rules(rules_file(tmp_path, _shadowed_rules(pki)))
    report = run_rules_test(rules, ["alice", "all", "alice"])
    assert [r.rule.name for r in report.reports] == ["alice", "all"]
    assert report.warnings == [
        "rule 'alice': pattern 'alice@example.com' is shadowed by '*@example.com' of the "
        "earlier rule 'all'; no address reaches it"
    ]
    # alice reaches rule 'all' first, whose certificate is bob's.
    assert [(r.address, r.outcome) for r in report.tested] == [
        ("alice@example.com", Outcome.PASSED),
        ("bob@example.com", Outcome.ENCRYPTED),
    ]
    assert not report.all_encrypted


def test_rules_test_unknown_rule_name(tmp_path: Path, pki: Pki) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            f"""
[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}
""",
        )
    )
    with pytest.raises(ConfigError, match="no rule named 'bob'"):
        run_rules_test(rules, ["bob"])


def test_sst_source(tmp_path: Path, pki: Pki) -> None:
    from smimecli.certs.sst import write_sst

    der = serialization.Encoding.DER
    (tmp_path / "people.sst").write_bytes(
        write_sst(
            [
                (pki.alice.cert.public_bytes(der), "Alice"),
                (pki.bob.cert.public_bytes(der), None),
            ]
        )
    )
    rules = load_rules(
        rules_file(
            tmp_path,
            """
[[rule]]
name = "sst"
recipients = ["*@example.com"]
source = { kind = "sst", path = "people.sst" }
""",
        )
    )
    rules.open_all()
    plan = plan_recipients(rules, ["bob@example.com", "alice@example.com", "eve@example.com"])
    assert one(plan, "bob@example.com").thumbprint == pki.bob.thumbprint
    assert one(plan, "alice@example.com").thumbprint == pki.alice.thumbprint
    assert one(plan, "eve@example.com").outcome is Outcome.PASSED


# --- already encrypted means a CMS body; addresses as the MTA sees them; unmatched --------

ENVELOPED_BODY = b"MIAGCSqGSIb3DQEHA6CAMIACAQAxggE4MIIBNAIBADCBnDCBjzELMAkGA1UEBhMC\n"
SMIME_HEAD = b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n"


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
        b"application/x-pkcs7-mime; smime-type=authEnveloped-data",
        b'multipart/encrypted; protocol="application/pgp-encrypted"; boundary=b',
    ],
)
def test_a_claim_of_encryption_does_not_pass_a_reject_rule(
    tmp_path: Path, pki: Pki, content_type: bytes
) -> None:
    path = _policy_rules(tmp_path, pki, "reject")
    message = b"To: nobody@example.com\nContent-Type: " + content_type + b"\n\nSecret plan.\n"
    out = io.BytesIO()
    with pytest.raises(RejectError, match=r"nobody@example\.com"):
        encrypt_with_rules(io.BytesIO(message), out, path, None, tmp_path / "s")
    assert out.getvalue() == b""


@pytest.mark.parametrize(
    "rules_text",
    [
        None,  # no rules file at all
        "[[rule]]\nname = 'x'\nrecipients = ['*@example.com']\n"
        "source = { kind = 'cer', path = 'missing.pem' }\n",
        "this is not TOML",
    ],
)
def test_already_encrypted_passes_even_with_broken_rules(
    tmp_path: Path, rules_text: str | None
) -> None:
    path = tmp_path / "rules.toml"
    if rules_text is not None:
        path.write_text(rules_text)
    message = b"To: nobody@example.com\n" + SMIME_HEAD + b"\n" + ENVELOPED_BODY
    out = io.BytesIO()
    outcome = encrypt_with_rules(io.BytesIO(message), out, path, None, tmp_path / "s")
    assert outcome.action == "already-encrypted"
    assert out.getvalue() == message
    assert outcome.to_json()["recipients"][0]["recipient"] == "nobody@example.com"


def test_broken_rules_still_fail_a_plaintext_message(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("this is not TOML")
    message = b"To: nobody@example.com\n" + SMIME_HEAD + b"\nSecret plan.\n"
    with pytest.raises(ConfigError, match="TOML syntax error"):
        encrypt_with_rules(io.BytesIO(message), io.BytesIO(), path, None, tmp_path / "s")


PARTNER_RULES = """
[[rule]]
name = "partner"
recipients = ["*@partner.example", "*@bücher.example", "*@xn--caf-dma.example"]
source = {{ kind = "dir", path = "empty" }}
on_missing_cert = "reject"

[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{alice}" }}
"""


@pytest.mark.parametrize(
    "address",
    [
        "bob@partner.example.",  # Postfix strips the trailing dot and delivers
        "bob@PARTNER.Example",
        "<bob@partner.example>",
        "bob@xn--bcher-kva.example",  # A-label of a U-label pattern
        "bob@BÜCHER.example",
        "bob@café.example",  # U-label of an A-label pattern
        "bob@café.example.",
    ],
)
@pytest.mark.parametrize("header_mode", [True, False])
def test_addresses_match_as_the_mta_delivers_them(
    tmp_path: Path, pki: Pki, address: str, header_mode: bool
) -> None:
    (tmp_path / "empty").mkdir()
    path = rules_file(tmp_path, PARTNER_RULES.format(alice=pki.alice.cert_pem))
    message = f"To: {address}\nSubject: x\n\nSecret plan.\n".encode()
    envelope = None if header_mode else [address]
    out = io.BytesIO()
    with pytest.raises(RejectError, match="rule 'partner'"):
        encrypt_with_rules(io.BytesIO(message), out, path, envelope, tmp_path / "s")
    assert out.getvalue() == b""


def test_unmatched_recipients_are_named_in_a_warning(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    path = rules_file(
        tmp_path,
        f'[[rule]]\nname = "alice"\nrecipients = ["alice@example.com"]\n'
        f'source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}\n',
    )
    message = b"To: alice@example.com, stranger@else.example\nSubject: x\n\nhi\n"
    outcome = encrypt_with_rules(io.BytesIO(message), io.BytesIO(), path, None, None)
    assert outcome.action == "encrypted"
    expected = (
        "no rule matches stranger@else.example: it gets the encrypted message, "
        "which it may not be able to read"
    )
    assert expected in outcome.to_json()["warnings"]
    assert {"code": "unmatched-recipient", "text": expected} in outcome.to_json()["notices"]
    assert caplog.text == ""
    message = b"To: stranger@else.example, other@else.example\nSubject: x\n\nhi\n"
    outcome = encrypt_with_rules(io.BytesIO(message), io.BytesIO(), path, None, None)
    assert outcome.action == "passed"
    expected = (
        "no rule matches stranger@else.example, other@else.example: "
        "each gets the message without encryption"
    )
    assert outcome.to_json()["warnings"] == [expected]
    assert caplog.text == ""


def test_an_address_longer_than_smtp_allows_is_bad_data(tmp_path: Path, pki: Pki) -> None:
    path = rules_file(
        tmp_path,
        "[[rule]]\nname='p'\nrecipients=['*@*.partner.example']\nsource={kind='dir', path='.'}\n",
    )
    rules = load_rules(path)
    local = "a" * 64
    ok = f"{local}@{'b' * 60}.{'c' * 60}.{'d' * 50}.partner.example"
    assert len(ok) <= 254
    assert plan_recipients(rules, [ok]).recipients[0].rule is not None
    with pytest.raises(DataError, match=r"more than SMTP allows \(254, RFC 5321\)"):
        plan_recipients(rules, ["x" * 180_000 + "@a.partner.example"])

"""``smimecli rules check`` / ``rules test`` and ``encrypt --rules`` (SPEC 1.1, 1.5, 3)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import Cli, Pki, assert_error
from tests.messages import message
from tests.rulesfiles import policy_rules, rules_file
from tests.unit.test_rules import BAD

NOW = dt.datetime.now(dt.UTC)


def good_rules(folder: Path, pki: Pki) -> Path:
    certs = folder / "certs"
    certs.mkdir(exist_ok=True)
    for identity in (pki.alice, pki.bob, pki.carol_ec):
        (certs / f"{identity.name}.pem").write_bytes(
            identity.cert.public_bytes(serialization.Encoding.PEM)
        )
    return rules_file(
        folder,
        f"""
[defaults]
cipher = "aes256"

[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_der}" }}
match = "any"

[[rule]]
name = "team"
recipients = ["*@example.com"]
source = {{ kind = "dir", path = "certs" }}
key_transport = "rsa-oaep"
oaep_hash = "sha512"
""",
    )


# --- rules check ----------------------------------------------------------------------------


def test_check_ok(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    result = cli(["rules", "check", "--rules", good_rules(tmp_path, pki)])
    assert result.exit_code == 0, result.output
    assert result.stdout.decode() == "OK: 2 rules\n"


@pytest.mark.parametrize("case", sorted(BAD))
def test_check_validation_errors_exit_78(cli: Cli, tmp_path: Path, case: str) -> None:
    text, rule, key = BAD[case]
    path = rules_file(tmp_path, text)
    result = cli(["rules", "check", "--rules", path])
    assert result.exit_code == 78, result.output
    assert result.stdout == b""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"smimecli: error: {path}"), lines[0]
    if rule is not None:
        assert rule in lines[0]
    assert repr(key) in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_check_unknown_cipher_exit_78(cli: Cli, tmp_path: Path) -> None:
    path = rules_file(
        tmp_path, BAD["unknown rule key"][0].replace('colour = "red"', 'cipher = "blowfish"')
    )
    result = cli(["rules", "check", "--rules", path])
    assert result.exit_code == 78, result.output
    assert "rule 'r1', key 'cipher': unknown cipher 'blowfish'" in result.stderr


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ('{ kind = "cer", path = "nope.cer" }', "source.path"),
        ('{ kind = "pfx", path = "x.pfx", password_file = "nope.txt" }', "source"),
        ('{ kind = "sst", path = "x.pfx" }', "source"),
        ('{ kind = "cer", path = "two.pem" }', "source"),
    ],
)
def test_check_opens_every_source(
    cli: Cli, tmp_path: Path, pki: Pki, source: str, key: str
) -> None:
    (tmp_path / "x.pfx").write_bytes(b"\x00garbage")
    two = pki.alice.cert_pem.read_bytes() + pki.bob.cert_pem.read_bytes()
    (tmp_path / "two.pem").write_bytes(two)
    path = rules_file(
        tmp_path,
        f"""
[[rule]]
name = "src"
recipients = ["a@example.com"]
source = {source}
""",
    )
    result = cli(["rules", "check", "--rules", path])
    assert result.exit_code == 78, result.output
    assert f"{path}:2: rule 'src', key '{key}" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_check_missing_rules_file(cli: Cli, tmp_path: Path) -> None:
    result = cli(["rules", "check", "--rules", tmp_path / "none.toml"])
    missing = tmp_path / "none.toml"
    assert_error(result, 78, f"cannot read rules file {missing}: No such file or directory")


def test_check_warns_about_shadowed_patterns(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    path = rules_file(
        tmp_path,
        f"""
[[rule]]
name = "all"
recipients = ["*@example.com"]
source = {{ kind = "cer", path = "{pki.bob.cert_pem}" }}

[[rule]]
name = "late"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}
""",
    )
    result = cli(["rules", "check", "--rules", path])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "shadowed" in result.stderr


# --- rules test -----------------------------------------------------------------------------


def test_test_needs_rule_names_or_all(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    path = good_rules(tmp_path, pki)
    result = cli(["rules", "test", "--rules", path])
    assert_error(result, 64, "name the rules to test, or give --all (see 'rules test --help')")
    result = cli(["rules", "test", "--rules", path, "--all", "alice"])
    assert_error(result, 64, "give rule names or --all, not both")


def test_test_unknown_rule_is_config_error(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    path = good_rules(tmp_path, pki)
    result = cli(["rules", "test", "--rules", path, "nosuch"])
    assert_error(result, 78, f"{path}: no rule named 'nosuch' (rules: alice, team)")


def test_test_bad_file_is_78(cli: Cli, tmp_path: Path) -> None:
    path = rules_file(tmp_path, BAD["bad oaep hash"][0])
    result = cli(["rules", "test", "--rules", path, "--all"])
    assert_error(result, 78, f"{path}:6: rule 'r1', key 'oaep_hash': unknown value 'md5'")
    assert result.stdout == b""


def test_test_all_encrypted_text(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    path = good_rules(tmp_path, pki)
    result = cli(["rules", "test", "--rules", path, "--all"])
    assert result.exit_code == 0, result.output
    text = result.stdout.decode()
    assert "sender: test@localhost" in text
    # The wildcard rule takes every address of its source: alice (shadowed by the first
    # rule, which still encrypts her), bob and carol.
    for identity in (pki.alice, pki.bob, pki.carol_ec):
        assert f"{identity.email}: ENCRYPTED" in text
        assert identity.thumbprint in text
    assert "aes256, RSA-OAEP sha512" in text
    assert "aes256, ECDH (RFC 5753)" in text
    assert "aes256, RSA PKCS#1 v1.5" in text
    assert "not after" in text
    assert "never sees it" in text  # alice@example.com is caught by rule 'alice' first
    assert "4 of 4 tested recipients ENCRYPTED" in text


def test_test_json(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    path = good_rules(tmp_path, pki)
    result = cli(
        [
            "rules",
            "test",
            "--rules",
            path,
            "team",
            "--recipient",
            "bob@example.com",
            "--recipient",
            "unknown@example.org",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["sender"] == "test@localhost" and doc["all_encrypted"] is True
    (rule,) = doc["rules"]
    assert rule["rule"] == "team" and rule["cipher"] == "aes256"
    (bob,) = rule["recipients"]
    assert bob["recipient"] == "bob@example.com" and bob["outcome"] == "ENCRYPTED"
    assert bob["certificate"]["thumbprint"] == pki.bob.thumbprint
    assert bob["certificate"]["not_after"].startswith(
        pki.bob.cert.not_valid_after_utc.strftime("%Y-%m-%d")
    )
    assert bob["algorithm"] == "rsa-oaep/sha512"


def test_test_recipient_matching_no_tested_rule_is_usage_error(
    cli: Cli, tmp_path: Path, pki: Pki
) -> None:
    path = good_rules(tmp_path, pki)
    result = cli(["rules", "test", "--rules", path, "alice", "--recipient", "x@example.org"])
    assert_error(result, 64, "none of the --recipient addresses matches the tested rules")


def test_test_all_reports_addresses_no_rule_matches(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    path = good_rules(tmp_path, pki)
    result = cli(
        ["rules", "test", "--rules", path, "--all", "--recipient", "x@example.org", "--json"]
    )
    assert_error(result, 67, "1 of 1 tested recipients would not be encrypted: x@example.org")
    doc = json.loads(result.stdout)
    (entry,) = [r for rule in doc["rules"] for r in rule["recipients"]]
    assert entry["rule"] is None and entry["outcome"] == "PASSED"


@pytest.mark.parametrize(
    ("flaw", "why"),
    [
        ("expired", "expired"),
        ("other-address", "does not name dora@example.com"),
        ("missing", "no certificate for dora@example.com"),
    ],
)
def test_test_says_why_no_certificate(
    cli: Cli, tmp_path: Path, pki: Pki, flaw: str, why: str
) -> None:
    folder = tmp_path / "dora"
    folder.mkdir()
    if flaw == "expired":
        old = pki.ca.issue(
            "Dora Old",
            "dora@example.com",
            not_before=NOW - dt.timedelta(days=30),
            not_after=NOW - dt.timedelta(days=2),
        )
        (folder / "dora.pem").write_bytes(old.cert_pem.read_bytes())
    elif flaw == "other-address":
        (folder / "bob.pem").write_bytes(pki.bob.cert_pem.read_bytes())
    path = rules_file(
        tmp_path,
        """
[[rule]]
name = "dora"
recipients = ["dora@example.com"]
source = { kind = "dir", path = "dora" }
on_missing_cert = "reject"
""",
    )
    result = cli(["rules", "test", "--rules", path, "dora"])
    assert_error(result, 67, "would not be encrypted: dora@example.com REJECTED")
    text = result.stdout.decode()
    assert "dora@example.com: REJECTED" in text
    assert why in text
    assert "0 of 1 tested recipients ENCRYPTED" in text
    assert "smimecli: error: 1 of 1 tested recipients would not be encrypted" in result.stderr


def test_test_gcm_and_weak_cipher_warnings(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    path = rules_file(
        tmp_path,
        f"""
[[rule]]
name = "gcm"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}
cipher = "aes256-gcm"

[[rule]]
name = "old"
recipients = ["bob@example.com"]
source = {{ kind = "cer", path = "{pki.bob.cert_pem}" }}
cipher = "3des"
""",
    )
    result = cli(["rules", "test", "--rules", path, "--all"])
    assert result.exit_code == 0, result.output
    text = result.stdout.decode()
    assert "AuthEnvelopedData" in text
    assert "weak content cipher 3des" in text


# --- encrypt --rules ------------------------------------------------------------------------

MESSAGE = message(
    "alice@example.com, nobody@example.com",
    b"Secret.\r\n",
    sender="sender@example.net",
    bcc="hidden@example.net",
    subject="policy",
    content_type="text/plain",
    newline=b"\r\n",
)


@pytest.mark.parametrize(("policy", "status"), [("reject", 67), ("tempfail", 75)])
def test_encrypt_rules_policy_writes_nothing(
    cli: Cli, tmp_path: Path, pki: Pki, policy: str, status: int
) -> None:
    path = policy_rules(tmp_path, pki.alice.cert_pem, policy)
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGE)
    target = tmp_path / "out.eml"
    result = cli(["encrypt", "--rules", path, src, "-o", target])
    assert result.exit_code == status, result.output
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.eml")] == []
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "nobody@example.com" in lines[0], result.stderr
    # To standard output: nothing either.
    result = cli(["encrypt", "--rules", path], input=MESSAGE)
    assert result.exit_code == status, result.output
    assert result.stdout == b""


def test_encrypt_rules_on_missing_cert_option_overrides(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    path = policy_rules(tmp_path, pki.alice.cert_pem, "pass")
    result = cli(["encrypt", "--rules", path, "--on-missing-cert", "reject"], input=MESSAGE)
    assert_error(result, 67, "no usable certificate for nobody@example.com (rule 'nobody', ")
    assert result.stdout == b""
    path = policy_rules(tmp_path, pki.alice.cert_pem, "reject")
    result = cli(["encrypt", "--rules", path, "--on-missing-cert", "pass"], input=MESSAGE)
    assert result.exit_code == 0, result.output
    assert b"application/pkcs7-mime" in result.stdout
    assert b"hidden@example.net" not in result.stdout  # encrypted output drops Bcc


def test_encrypt_rules_pass_through_byte_for_byte(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    path = policy_rules(tmp_path, pki.alice.cert_pem, "pass")
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGE)
    target = tmp_path / "out.eml"
    result = cli(
        [
            "encrypt",
            "--rules",
            path,
            "--recipient",
            "nobody@example.com",
            "--recipient",
            "someone@else.example",
            src,
            "-o",
            target,
        ]
    )
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == MESSAGE


def test_encrypt_rules_bad_rules_file_is_78(cli: Cli, tmp_path: Path) -> None:
    path = rules_file(tmp_path, BAD["bad policy"][0])
    target = tmp_path / "out.eml"
    result = cli(["encrypt", "--rules", path, "-o", target], input=MESSAGE)
    assert_error(result, 78, f"{path}:6: rule 'r1', key 'on_missing_cert': unknown value 'drop'")
    assert not target.exists()


def test_rules_check_json(cli: Cli, tmp_path: Path, pki: Pki) -> None:
    import json

    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'[[rule]]\nname = "alice"\nrecipients = ["alice@example.com"]\n'
        f'source = {{ kind = "cer", path = "{pki.alice.cert_der}" }}\n'
        f'[[rule]]\nname = "all"\nrecipients = ["*@example.com"]\n'
        f'source = {{ kind = "cer", path = "{pki.bob.cert_der}" }}\nmatch = "email"\n',
        encoding="utf-8",
    )
    result = cli(["rules", "check", "--rules", str(rules), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "rules": ["alice", "all"], "warnings": []}


def test_encrypt_rules_json_gives_each_algorithm_warning_once(
    cli: Cli, tmp_path: Path, pki: Pki
) -> None:
    path = rules_file(
        tmp_path,
        f"""
[[rule]]
name = "old"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}
cipher = "3des"
key_transport = "rsa-oaep"
oaep_hash = "sha1"
""",
    )
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGE)
    target = tmp_path / "out.eml"
    result = cli(
        [
            "encrypt",
            "--rules",
            path,
            "--recipient",
            "alice@example.com",
            src,
            "-o",
            target,
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    # The plan's words, each once: the CMS layer's own wording of the same two is left out.
    assert len(warnings) == 2, warnings
    assert sum("3des" in w for w in warnings) == 1, warnings
    assert sum("SHA-1" in w for w in warnings) == 1, warnings
    assert any(w.startswith("weak content cipher 3des") for w in warnings), warnings


def test_rules_test_on_an_80_column_terminal_keeps_thumbprints_whole(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    from tests.conftest import run_on_terminal

    cli(["certs", "import", pki.alice.cert_pem, "--store-name", "other"])
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "alice"\nrecipients = ["alice@example.com"]\n'
        'source = { kind = "store" }\n'
    )
    shown = run_on_terminal(
        ["rules", "test", "--all", "--rules", rules],
        80,
        {"SMIMECLI_STORE": str(tmp_path / "store")},
    )
    assert "ENCRYPTED" in shown, shown
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    words = shown.split()
    assert pki.alice.thumbprint[:16] in words, shown
    assert "alice@example.com" in words, shown


def test_rules_test_table_as_a_person_sees_it(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    # On a terminal (not --json): the file and sender, a heading per rule, the column header
    # and one row per recipient, then the one error line for a recipient left unencrypted.
    from tests.conftest import run_on_terminal

    assert cli(["certs", "import", pki.alice.cert_pem, "--store-name", "other"]).exit_code == 0
    rules = rules_file(
        tmp_path,
        '[[rule]]\nname = "alice"\nrecipients = ["alice@example.com", "nobody@example.com"]\n'
        'source = { kind = "store" }\n',
    )
    shown = run_on_terminal(
        ["rules", "test", "--all", "--rules", rules, "--recipient", "alice@example.com"],
        160,
        {"SMIMECLI_STORE": str(tmp_path / "store")},
    )
    lines = [line.rstrip() for line in shown.splitlines()]
    assert lines[0] == f"rules file: {rules}  sender: test@localhost", shown
    assert lines[1] == "rule 'alice'", shown
    header = ["Recipient", "Rule", "Outcome", "Certificate", "Algorithms", "Reason"]
    assert lines[2].split() == header, shown
    assert set(lines[3]) == {"─"}, shown
    row = lines[4].split()
    assert row[:5] == [
        "alice@example.com",
        "alice",
        "ENCRYPTED",
        "CN=Alice,",
        "E=alice@example.com",
    ]
    words = " ".join(" ".join(lines[4:]).split())
    assert "aes256, RSA PKCS#1 v1.5" in words, shown
    reason = lines[2].index("Reason")  # the last column, wrapped over the row's lines
    said = " ".join(line[reason:].strip() for line in lines[4:] if line[reason:].strip())
    assert said == "the usable certificate naming it in store other", shown
    assert "not after" in words, shown
    assert pki.alice.thumbprint[:16] in lines[5].split(), shown
    assert "Traceback" not in shown and "smimecli: error" not in shown, shown


def test_encrypt_names_unmatched_recipients_on_stderr_and_in_json(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    rules = rules_file(
        tmp_path,
        f'[[rule]]\nname = "alice"\nrecipients = ["alice@example.com"]\n'
        f'source = {{ kind = "cer", path = "{pki.alice.cert_pem}" }}\n',
    )
    message = b"From: a@example.org\nTo: alice@example.com\nSubject: x\n\nhi\n"
    args: list[str | Path] = ["encrypt", "--rules", rules, "--recipient", "alice@example.com"]
    result = cli([*args, "--recipient", "Stranger@Else.Example."], input=message)
    assert result.exit_code == 0, result.output
    warning = (
        "no rule matches Stranger@Else.Example.: it gets the encrypted message, "
        "which it may not be able to read"
    )
    assert warning in result.stderr
    out = tmp_path / "out.eml"
    result = cli(
        [*args, "--recipient", "stranger@else.example", "-o", out, "--json"], input=message
    )
    assert result.exit_code == 0, result.output
    assert any("stranger@else.example" in w for w in json.loads(result.stdout)["warnings"])


def test_encrypt_header_recipient_with_trailing_dot_meets_its_rule(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    rules = rules_file(
        tmp_path,
        '[[rule]]\nname = "partner"\nrecipients = ["*@partner.example"]\n'
        'source = { kind = "dir", path = "empty" }\non_missing_cert = "reject"\n',
    )
    message = b"From: a@example.org\nTo: bob@partner.example.\nSubject: x\n\nSecret plan.\n"
    result = cli(["encrypt", "--rules", rules], input=message)
    assert result.exit_code == 67, result.output
    assert result.stdout == b""
    assert "no usable certificate for bob@partner.example." in result.stderr


def test_encrypt_claimed_encryption_with_plaintext_is_rejected(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    rules = rules_file(
        tmp_path,
        '[[rule]]\nname = "partner"\nrecipients = ["*@partner.example"]\n'
        'source = { kind = "dir", path = "empty" }\non_missing_cert = "reject"\n',
    )
    message = (
        b"From: a@example.org\nTo: bob@partner.example\n"
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n\nSecret plan.\n"
    )
    result = cli(["encrypt", "--rules", rules], input=message)
    assert result.exit_code == 67, result.output
    assert result.stdout == b""
    assert "rule 'partner'" in result.stderr


def test_rules_check_of_thousands_of_rules(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    blocks = [
        f'[[rule]]\nname = "r{n}"\nrecipients = ["user{n}@partner{n}.example"]\n'
        'source = { kind = "dir", path = "empty" }'
        for n in range(3000)
    ]
    blocks.append(
        '[[rule]]\nname = "late"\nrecipients = ["USER5@partner5.example."]\n'
        'source = { kind = "dir", path = "empty" }'
    )
    rules = rules_file(tmp_path, "\n\n".join(blocks) + "\n")
    started = dt.datetime.now()
    result = cli(["rules", "check", "--rules", rules])
    elapsed = (dt.datetime.now() - started).total_seconds()
    assert result.exit_code == 0, result.output
    assert result.stdout.decode() == "OK: 3001 rules\n"
    assert "pattern 'USER5@partner5.example.' is shadowed by 'user5@partner5.example'" in (
        result.stderr
    )
    assert elapsed < 5, f"{elapsed:.1f} s"


def _nested_to(depth: int) -> bytes:
    return (
        b"From: a@example.com\r\nTo: alice@example.com "
        + b"(" * depth
        + b")" * depth
        + b"\r\nSubject: deep\r\n\r\nBody.\r\n"
    )


def test_encrypt_rules_deeply_nested_comment_in_to_is_65(
    cli: Cli, tmp_path: Path, pki: Pki
) -> None:
    # The address parser recursed once per "(": 2,000 of them crashed with 70.
    path = policy_rules(tmp_path, pki.alice.cert_pem, "pass")
    result = cli(["encrypt", "--rules", path], input=_nested_to(2000))
    assert result.exit_code == 65, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "nests comments too deeply" in lines[0], result.stderr
    assert result.stdout == b""


def test_batch_rules_deeply_nested_comment_fails_only_that_message(
    cli: Cli, tmp_path: Path, pki: Pki
) -> None:
    path = policy_rules(tmp_path, pki.alice.cert_pem, "pass")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "bad.eml").write_bytes(_nested_to(2000))
    (inbox / "good.eml").write_bytes(MESSAGE.replace(b"nobody@example.com", b"x@example.org"))
    out = tmp_path / "out"
    out.mkdir()
    result = cli(["encrypt", inbox, "--out-dir", out, "--rules", path, "--json"])
    assert result.exit_code == 65, result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        f"smimecli: error: {inbox / 'bad.eml'}: To/Cc/Bcc header nests comments too deeply to "
        "read; the message is malformed"
    ], result.stderr
    records = {
        Path(r["input"]).name: r for r in map(json.loads, result.stdout.decode().splitlines())
    }
    assert records["bad.eml"]["status"] == 65
    assert records["good.eml"]["outcome"] == "encrypted"

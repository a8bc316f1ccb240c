"""``smimecli certs``: import, export, list, show, remove through the real CLI."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from smimecli.certs import sst
from smimecli.certs.names import thumbprint
from smimecli.certs.store import Store
from tests.conftest import Pki, Result, assert_error
from tests.pki import PASSWORD

Cli = Callable[..., Result]
PW = {"PFXPW": PASSWORD.decode()}


def _dump(tmp_path: Path) -> list[Any]:
    folder = tmp_path / "store"
    if not folder.exists():
        return []
    with Store.open(folder, create=True) as store:
        return store.dump()


def test_import_pfx_sorts_into_my_and_ca(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    result = cli(["certs", "import", pki.alice.pfx, "--password-env", "PFXPW"], env=PW)
    assert result.exit_code == 0, result.output
    listed = json.loads(cli(["certs", "list", "--json"]).stdout)
    by_thumb = {row["thumbprint"]: row for row in listed}
    assert by_thumb[pki.alice.thumbprint]["stores"] == ["my"]
    assert by_thumb[pki.alice.thumbprint]["has_key"] is True
    assert by_thumb[pki.alice.thumbprint]["friendly_name"] == "Alice"
    assert by_thumb[thumbprint(pki.ca.cert)]["stores"] == ["ca"]
    folder = tmp_path / "store"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())


def test_import_merges_and_store_name(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    assert cli(["certs", "import", pki.alice.cert_pem]).exit_code == 0
    assert cli(["certs", "import", pki.alice.cert_der]).exit_code == 0
    assert cli(["certs", "import", pki.ca.cert_pem, "--store-name", "root"]).exit_code == 0
    listed = json.loads(cli(["certs", "list", "--json"]).stdout)
    assert [r["stores"] for r in listed] == [["other"], ["root"]]
    result = cli(["certs", "import", pki.ca.cert_pem, "--store-name", "trusted"])
    assert_error(result, 64, "unknown store name 'trusted': use one of my, other, root, ca")


@pytest.mark.parametrize(
    "content",
    [
        os.urandom(300),
        b"\x30\x82\x10\x00\x30\x82",
        b"\x00\x00\x00\x00CERT\x20\0\0\0\1\0\0\0\xff\xff",
    ],
    ids=["random", "der-length-past-end", "sst-length-past-end"],
)
def test_bad_file_changes_nothing(cli: Cli, pki: Pki, tmp_path: Path, content: bytes) -> None:
    assert cli(["certs", "import", pki.bob.cert_pem]).exit_code == 0
    before = _dump(tmp_path)
    bad = tmp_path / "bad.cer"
    bad.write_bytes(content)
    # A good file next to the bad one is not imported either: one transaction.
    result = cli(["certs", "import", pki.alice.cert_pem, bad])
    assert result.exit_code == 65, result.output
    assert result.stderr.count("\n") == 1 and "bad.cer" in result.stderr
    assert "Traceback" not in result.stderr
    assert _dump(tmp_path) == before


def test_truncated_and_wrong_password(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    assert cli(["certs", "import", pki.bob.cert_pem]).exit_code == 0
    before = _dump(tmp_path)
    truncated = tmp_path / "cut.pfx"
    truncated.write_bytes(pki.alice.pfx.read_bytes()[:700])
    result = cli(["certs", "import", truncated, "--password-env", "PFXPW"], env=PW)
    assert_error(result, 65, f"corrupt PKCS#12 file in {truncated}: ")
    result = cli(["certs", "import", pki.alice.pfx, "--password-env", "BAD"], env={"BAD": "x"})
    assert_error(result, 77, f"wrong password for {pki.alice.pfx} (or the file is damaged)")
    result = cli(["certs", "import", pki.alice.pfx])  # no password, stdin is no terminal
    assert_error(result, 77, f"{pki.alice.pfx} is protected by a password: give --password-file")
    assert _dump(tmp_path) == before
    result = cli(["certs", "import", tmp_path / "missing.cer"])
    assert_error(result, 66, f"cannot read {tmp_path / 'missing.cer'}: No such file or directory")


def test_strict_and_skipped(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    junk = b"-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(junk + pki.bob.cert_pem.read_bytes())
    result = cli(["certs", "import", mixed, "--strict"])
    assert_error(result, 65, "1 certificate(s) could not be parsed (--strict): nothing imported")
    assert f"skipped certificate 1 in {mixed}: its DER encoding is cut short" in result.stderr
    assert _dump(tmp_path) == []
    result = cli(["certs", "import", mixed])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("smimecli: warning:") == 1


def test_ambiguous_selector_exits_64_listing_matches(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    other_alice = pki.ca.issue("H3 Alice Second", "alice@example.com")
    cli(["certs", "import", pki.alice.cert_pem, other_alice.cert_pem])
    out = tmp_path / "a.cer"
    result = cli(["certs", "export", "alice@example.com", "-o", out])
    assert result.exit_code == 64
    assert pki.alice.thumbprint in result.stderr and other_alice.thumbprint in result.stderr
    assert not out.exists()
    result = cli(["certs", "show", "nobody@example.com"])
    assert_error(result, 65, "no certificate matches 'nobody@example.com' (see 'smimecli certs")


def test_root_in_two_stores_is_one_match(cli: Cli, pki: Pki) -> None:
    cli(["certs", "import", pki.ca.cert_pem, "--store-name", "root"])
    cli(["certs", "import", pki.ca.cert_pem, "--store-name", "my"])
    result = cli(["certs", "show", "Test Root V1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stores"] == ["my", "root"]


def test_export_formats_reimport(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    cli(["certs", "import", pki.alice.pfx, "--password-env", "PFXPW"], env=PW)
    cli(["certs", "import", pki.bob.cert_pem])
    for name in ("a.cer", "a.pem", "ab.p7b", "ab.sst"):
        selectors = ["alice@example.com"] + (["bob@example.com"] if "ab" in name else [])
        result = cli(["certs", "export", *selectors, "-o", tmp_path / name])
        assert result.exit_code == 0, result.output
    sst_elements = sst.read_sst((tmp_path / "ab.sst").read_bytes())
    assert [e.friendly_name for e in sst_elements] == ["Alice", None]
    pfx = tmp_path / "a.pfx"
    result = cli(
        [
            "certs",
            "export",
            pki.alice.thumbprint[:10],
            "-o",
            pfx,
            "--with-private-key",
            "--password-env",
            "PFXPW",
        ],
        env=PW,
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(pfx.stat().st_mode) == 0o600
    bundle = pkcs12.load_pkcs12(pfx.read_bytes(), PASSWORD)
    assert bundle.key is not None and bundle.cert is not None
    assert [c.certificate for c in bundle.additional_certs] == [pki.ca.cert]
    # Re-import everything into a fresh store: same thumbprints, names and keys.
    fresh = {"SMIMECLI_STORE": str(tmp_path / "fresh")}
    for name in ("a.cer", "a.pem", "ab.p7b", "ab.sst", "a.pfx"):
        result = cli(
            ["certs", "import", tmp_path / name, "--password-env", "PFXPW"], env={**PW, **fresh}
        )
        assert result.exit_code == 0, result.output
    with Store.open(tmp_path / "fresh", create=True) as store:
        rows = {c.thumbprint: c for c in store.certificates()}
    assert set(rows) == {pki.alice.thumbprint, pki.bob.thumbprint, thumbprint(pki.ca.cert)}
    alice = rows[pki.alice.thumbprint]
    assert alice.has_key and alice.friendly_name == "Alice"


def test_export_errors(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    cli(["certs", "import", pki.bob.cert_pem])
    out = tmp_path / "b.pfx"
    result = cli(["certs", "export", "bob@example.com", "-o", out])
    assert_error(result, 64, "a .pfx always needs a password: give --password-file or --password")
    result = cli(
        [
            "certs",
            "export",
            "bob@example.com",
            "-o",
            out,
            "--with-private-key",
            "--password-env",
            "PFXPW",
        ],
        env=PW,
    )
    assert result.exit_code == 65 and "no private key" in result.stderr
    result = cli(["certs", "export", "bob@example.com", "-o", tmp_path / "b.xyz"])
    assert_error(result, 64, "cannot tell the export format from 'b.xyz': give --format (cer, ")
    result = cli(["certs", "export", "bob@example.com", "bob", "-o", tmp_path / "b.cer"])
    assert_error(result, 64, "--format cer holds one certificate: give exactly one selector")
    assert not list(tmp_path.glob("b.*"))
    result = cli(["certs", "export", "bob@example.com", "-o", tmp_path / "no" / "b.cer"])
    assert_error(result, 73, f"cannot write {tmp_path / 'no' / 'b.cer'}: No such file or dir")


def test_list_text_and_email_pattern(cli: Cli, pki: Pki) -> None:
    cli(["certs", "import", pki.alice.cert_pem, pki.bob.cert_pem, pki.carol_ec.cert_pem])
    result = cli(["certs", "list", "--email", "?ob@*.com"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["store", "subject", "emails"]
    assert len(lines) == 2 and pki.bob.thumbprint in lines[1]
    exact = json.loads(cli(["certs", "list", "--json", "--email", "CAROL@example.com"]).stdout)
    assert [r["thumbprint"] for r in exact] == [pki.carol_ec.thumbprint]


def test_list_shows_problems(cli: Cli, pki: Pki) -> None:
    import datetime as dt

    old = pki.ca.issue(
        "H3 CLI Old",
        "old@example.com",
        not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
        eku=True,
    )
    cli(["certs", "import", old.cert_pem])
    listed = json.loads(cli(["certs", "list", "--json"]).stdout)
    assert listed[0]["problems"] == ["expired 2021-01-01"]
    assert "expired 2021-01-01" in cli(["certs", "list"]).stdout.decode()


def test_remove(cli: Cli, pki: Pki) -> None:
    cli(["certs", "import", pki.alice.cert_pem, pki.bob.cert_pem])
    result = cli(["certs", "remove", "alice@example.com", pki.bob.thumbprint[:8]])
    assert result.exit_code == 0, result.output
    assert json.loads(cli(["certs", "list", "--json"]).stdout) == []
    result = cli(["certs", "remove", "alice@example.com"])
    assert_error(result, 65, "no certificate matches 'alice@example.com' (see 'smimecli certs")


def test_signed_mail_import_goes_to_other(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(b"Content-Type: text/plain\r\n\r\nhi\r\n")
        .add_signer(pki.carol_ec.cert, pki.carol_ec.key, hashes.SHA256())
        .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    )
    mail = tmp_path / "signed.eml"
    mail.write_bytes(b"From: carol@example.com\r\nSubject: s\r\n" + signed)
    assert cli(["certs", "import", mail]).exit_code == 0
    listed = json.loads(cli(["certs", "list", "--json"]).stdout)
    assert [(r["thumbprint"], r["stores"]) for r in listed] == [
        (pki.carol_ec.thumbprint, ["other"])
    ]


def test_import_json_lists_what_was_imported(cli: Cli, pki: Pki) -> None:
    from cryptography.hazmat.primitives import hashes

    ca_thumbprint = pki.ca.cert.fingerprint(hashes.SHA1()).hex().upper()
    result = cli(
        [
            "certs",
            "import",
            str(pki.alice.pfx),
            str(pki.bob.cert_pem),
            "--password-env",
            "PFXPW",
            "--json",
        ],
        env={"PFXPW": PASSWORD.decode()},
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    by_thumb = {r["thumbprint"]: r for r in document["imported"]}
    assert by_thumb[pki.alice.thumbprint]["store"] == "my"
    assert by_thumb[pki.alice.thumbprint]["has_key"] is True
    assert by_thumb[pki.bob.thumbprint]["store"] == "other"
    assert by_thumb[ca_thumbprint]["store"] == "ca"
    assert document["skipped"] == []


def test_export_and_remove_json(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    assert cli(["certs", "import", str(pki.bob.cert_pem)]).exit_code == 0
    target = tmp_path / "bob.cer"
    exported = cli(["certs", "export", pki.bob.email, "-o", str(target), "--json"])
    assert exported.exit_code == 0, exported.output
    document = json.loads(exported.stdout)
    assert document["format"] == "cer" and document["private_key"] is False
    assert [c["thumbprint"] for c in document["certificates"]] == [pki.bob.thumbprint]
    assert target.read_bytes() == pki.bob.cert_der.read_bytes()
    removed = cli(["certs", "remove", pki.bob.thumbprint[:10], "--json"])
    assert removed.exit_code == 0, removed.output
    entry = json.loads(removed.stdout)["removed"][0]
    assert entry["thumbprint"] == pki.bob.thumbprint and entry["stores"] == ["other"]
    result = cli(["certs", "show", pki.bob.thumbprint])
    assert_error(result, 65, f"no certificate matches '{pki.bob.thumbprint}'")


def test_list_email_bracket_is_literal(cli: Cli, pki: Pki) -> None:
    odd = pki.ca.issue("H3 Bracket", "list[1]@example.com")
    cli(["certs", "import", odd.cert_pem, pki.bob.cert_pem])
    # Only * and ? are wildcards (SPEC 3): "[1]" names itself, "[a-z]" matches nothing.
    literal = json.loads(cli(["certs", "list", "--json", "--email", "LIST[1]@example.com"]).stdout)
    assert [r["thumbprint"] for r in literal] == [odd.thumbprint]
    pattern = json.loads(cli(["certs", "list", "--json", "--email", "list[?]@*"]).stdout)
    assert [r["thumbprint"] for r in pattern] == [odd.thumbprint]
    assert json.loads(cli(["certs", "list", "--json", "--email", "[a-z]*"]).stdout) == []


def test_decrypt_from_store_by_ski_without_the_extension(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    # A recipient certificate with no subjectKeyIdentifier extension: encrypt names it by
    # the RFC 5280 method 1 value, and the store must find it by that value.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "No SKI")]))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("noski@example.com")]), critical=False
        )
        .sign(pki.ca.key, hashes.SHA256())
    )
    cert_pem = tmp_path / "noski.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    bundle = tmp_path / "noski-with-key.pem"
    bundle.write_bytes(
        cert_pem.read_bytes()
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert cli(["certs", "import", bundle]).exit_code == 0
    message = b"From: a@example.com\nTo: noski@example.com\nContent-Type: text/plain\n\nhi\n"
    encrypted = cli(["encrypt", "--cert", cert_pem, "--recipient-id", "ski"], input=message)
    assert encrypted.exit_code == 0, encrypted.output
    result = cli(["decrypt"], input=encrypted.stdout)
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(b"\n\nhi\n")


def test_pem_key_export_needs_a_password_or_no_key_password(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    cli(["certs", "import", pki.alice.pfx, "--password-env", "PFXPW"], env=PW)
    out = tmp_path / "k.pem"
    args = ["certs", "export", "alice@example.com", "-o", out, "--format", "pem"]
    refused = cli([*args, "--with-private-key"])
    assert refused.exit_code == 64
    assert "refusing to write an unencrypted private key" in refused.stderr
    assert "--no-key-password" in refused.stderr
    assert not out.exists()
    encrypted = cli([*args, "--with-private-key", "--password-env", "PFXPW"], env=PW)
    assert encrypted.exit_code == 0, encrypted.stderr
    assert b"ENCRYPTED PRIVATE KEY" in out.read_bytes()
    clear = cli([*args, "--with-private-key", "--no-key-password", "--force"])
    assert clear.exit_code == 0, clear.stderr
    assert b"-----BEGIN PRIVATE KEY" in out.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_key_into_encrypted_store_without_passphrase_is_77(
    cli: Cli, pki: Pki, tmp_path: Path
) -> None:
    secret = {**PW, "SMIMECLI_STORE_PASSWORD": "store secret"}
    assert (
        cli(["certs", "import", pki.alice.pfx, "--password-env", "PFXPW"], env=secret).exit_code
        == 0
    )
    before = _dump(tmp_path)
    result = cli(["certs", "import", pki.bob.pfx, "--password-env", "PFXPW"], env=PW)
    assert result.exit_code == 77
    assert "this store's keys are encrypted: set SMIMECLI_STORE_PASSWORD" in result.stderr
    assert _dump(tmp_path) == before
    lab = cli(["gen-root"])
    assert lab.exit_code == 77, lab.stderr
    assert "this store's keys are encrypted" in lab.stderr
    assert _dump(tmp_path) == before


def test_show_uses_the_key_usage_names_of_gen_root(cli: Cli) -> None:
    usage = "DigitalSignature,NonRepudiation,CertSign,CRLSign"
    made = cli(["gen-root", "--key-usage", usage])
    assert made.exit_code == 0, made.output
    selector = made.stdout.decode().split()[0]
    shown = cli(["certs", "show", selector])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.decode().splitlines()
    assert "key usage:           DigitalSignature, NonRepudiation, CertSign, CRLSign" in lines
    assert "has key:             yes" in lines
    assert "ca:                  yes" in lines
    doc = json.loads(cli(["certs", "show", selector, "--json"]).stdout)
    assert doc["key_usage"] == usage.split(",")
    assert doc["has_key"] is True


def test_list_on_an_80_column_terminal_cuts_nothing(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    from tests.conftest import run_on_terminal

    long = pki.ca.issue(
        "A person with a rather long common name, Department of Examples",
        "first.last@subdomain.example.org",
    )
    cli(["certs", "import", pki.alice.cert_pem, pki.bob.cert_pem, long.cert_pem])
    cli(["certs", "import", pki.ca.cert_pem, "--store-name", "root"])
    docs = json.loads(cli(["certs", "list", "--json"]).stdout)
    env = {"SMIMECLI_STORE": str(tmp_path / "store")}
    for columns in (80, 150):
        shown = run_on_terminal(["certs", "list"], columns, env)
        lines = shown.splitlines()
        assert all(len(line) <= columns for line in lines), shown
        assert "…" not in shown
        words = shown.split()
        for doc in docs:
            prefix = next(w for w in words if doc["thumbprint"].startswith(w) and len(w) >= 8)
            # a selector: copied from the table, it names this certificate alone
            picked = json.loads(cli(["certs", "show", prefix, "--json"]).stdout)
            assert picked["thumbprint"] == doc["thumbprint"]
            assert doc["not_after"][:10] in words
            for email in doc["emails"]:
                assert email in words, shown
    # piped: the full thumbprints
    piped = cli(["certs", "list"]).stdout.decode()
    assert all(doc["thumbprint"] in piped for doc in docs)


def test_selector_lengths_are_unique_prefixes() -> None:
    from smimecli.cli.certs import selector_lengths

    thumbs = ["AB" * 20, "ABABABABABAB" + "0" * 28, "ABABABABABAC" + "0" * 28, "1" * 40]
    lengths = selector_lengths(thumbs)
    assert lengths["1" * 40] == 8
    assert lengths["AB" * 20] == 13
    assert lengths["ABABABABABAB" + "0" * 28] == 13
    assert lengths["ABABABABABAC" + "0" * 28] == 12
    for thumb, length in lengths.items():
        assert [t for t in thumbs if t.startswith(thumb[:length])] == [thumb]


def test_import_deeply_nested_signed_mail_is_65(cli: Cli, tmp_path: Path) -> None:
    # The email package recursed once per nested multipart: 2,000 levels crashed with 70.
    depth = 2000
    head = b"".join(
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    mail = b"From: a@example.com\r\n" + head + b"Content-Type: text/plain\r\n\r\nx\r\n"
    path = tmp_path / "deep.eml"
    path.write_bytes(mail)
    result = cli(["certs", "import", path])
    assert result.exit_code == 65, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "deep.eml" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "Recursion" not in result.stderr


def test_export_refuses_to_replace_an_existing_file(cli: Cli, pki: Pki, tmp_path: Path) -> None:
    cli(["certs", "import", pki.alice.pfx, "--password-env", "PFXPW"], env=PW)
    out = tmp_path / "alice.key.pem"
    out.write_bytes(b"an existing private key")
    args = ["certs", "export", "alice@example.com", "-o", out, "--format", "pem"]
    result = cli([*args, "--with-private-key", "--password-env", "PFXPW"], env=PW)
    assert result.exit_code == 73
    assert result.stderr == (
        f"smimecli: error: {out} exists: refusing to replace it (use --force to overwrite)\n"
    )
    assert out.read_bytes() == b"an existing private key"
    forced = cli([*args, "--force"])
    assert forced.exit_code == 0, forced.stderr
    assert out.read_bytes().startswith(b"-----BEGIN CERTIFICATE")

"""Every signed message in Thunderbird's table (expected-results.json), checked by
``smimecli verify`` (layer by layer) or ``smimecli decrypt --require-signature``, against
the verdict Thunderbird gives: the exit status, the signer's address and good or bad.

Where smimecli's documented rules differ from Thunderbird's, :data:`DIFFERENT` says what
smimecli answers and why; the test then holds smimecli to that answer."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import INTEROP_ABSENT, Result, interop_dir, require_tool

pytestmark = pytest.mark.interop

Cli = Callable[..., Result]
TB = "thunderbird-comm-central/mailnews/test/data/smime"
TABLE = "thunderbird-comm-central/expected-results.json"
ALICE_TO_BOB = b"This is a test message from Alice to Bob."
HASHES = ("SHA256", "SHA384", "SHA512")

FROM_MISMATCH = (
    "Thunderbird judges Alice's inner signature against the outer From: (Dave) and calls it "
    "bad; smimecli checks each layer and says that the signer does not name the From: "
    "address on a warning line, which does not fail a signature that holds"
)
OVER_CIPHERTEXT = (
    "Thunderbird does not count a signature made over the ciphertext (sig=false); smimecli "
    "checks it like any other, and --require-signature accepts one that holds and is trusted"
)
BROKEN_OUTER = (
    "the outer signature was left deliberately mismatched (smime-manual/readme.txt) and "
    "Thunderbird ignores it; smimecli reports it and --require-signature writes nothing"
)
DIFFERENT: dict[str, tuple[bool, str]] = {
    "alice.future.dsig.SHA256.multipart.eml": (
        True,
        "the Date: header is 6 hours after the signing time: Thunderbird compares the two, "
        "smimecli judges the signing time against the certificates and now (the Date: "
        "header is whatever the sender wrote)",
    ),
    **{f"alice.env.sig.{h}.opaque.eml": (True, OVER_CIPHERTEXT) for h in HASHES},
    **{
        f"alice.plain.{inner}.{h}.{a}.dave.{outer}.{h}.{b}.eml": (True, FROM_MISMATCH)
        for h in HASHES
        for inner, a in (("sig", "opaque"), ("dsig", "multipart"))
        for outer, b in (("sig", "opaque"), ("dsig", "multipart"))
        if "dsig" in (inner, outer)
    },
    "../smime-manual/alice.dsig.SHA256.multipart.env.dsig.eml": (False, BROKEN_OUTER),
    "../smime-manual/outer-smime-bad-sig-inner-smime-enc-sig.eml": (False, BROKEN_OUTER),
}


def _signed_entries() -> list[object]:
    """The table's entries for messages that carry a signature, as test parameters."""
    found = interop_dir()
    if found is None or not (found / TABLE).is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=INTEROP_ABSENT))]
    entries = json.loads((found / TABLE).read_text())
    return [pytest.param(e, id=e["filename"]) for e in entries if "sig" in Path(e["filename"]).name]


def _layers(name: str) -> tuple[int, int]:
    """Signature layers (outside, inside) the envelope, read from the file's name."""
    if name.startswith("outer-smime-"):
        return 1, int(name.endswith("-enc-sig.eml"))
    inside, _, outside = name.partition(".env.")

    def count(part: str) -> int:
        return sum(token in ("sig", "dsig") for token in part.split("."))

    return count(outside), count(inside)


@pytest.fixture(scope="module")
def bob(interop: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Bob's key and certificate as PEM (read from Bob.p12 once: its PBKDF2 is slow)."""
    openssl = require_tool("openssl")
    folder = tmp_path_factory.mktemp("bob")
    key, cert = folder / "bob.key", folder / "bob.pem"
    p12 = ["pkcs12", "-in", str(interop / TB / "Bob.p12"), "-passin", "pass:nss", "-nodes"]
    for out, only in ((key, "-nocerts"), (cert, "-clcerts")):
        extra = [] if only == "-nocerts" else ["-nokeys"]
        subprocess.run([openssl, *p12, only, *extra, "-out", str(out)], check=True, timeout=60)
    return key, cert


def _encrypted(entry: dict[str, Any]) -> bool:
    name = entry["filename"]
    return bool(entry.get("enc")) or ".env.sig." in name or ".env.dsig." in name


@pytest.mark.parametrize("entry", _signed_entries())
def test_thunderbird_signed_message(
    entry: dict[str, Any], interop: Path, cli: Cli, bob: tuple[Path, Path], tmp_path: Path
) -> None:
    name = entry["filename"]
    path = interop / TB / name
    thunderbird_good = bool(entry.get("sig") and entry.get("sig_good"))
    expected, _why = DIFFERENT.get(name, (thunderbird_good, "as Thunderbird"))
    signer = "dave@example.com" if "dave" in entry else "alice@example.com"
    ca = interop / TB / "TestCA.pem"
    out = tmp_path / "out.eml"
    if _encrypted(entry):
        good = _decrypt(cli, path, out, bob, ca, signer, thunderbird_good)
    else:
        good = _verify_layers(cli, path, out, ca, signer, 2 if "dave" in entry else 1)
    assert good == expected, (name, DIFFERENT.get(name))
    if name in DIFFERENT:
        assert expected != thunderbird_good, f"{name}: agrees with Thunderbird now"


def _decrypt(
    cli: Cli,
    path: Path,
    out: Path,
    bob: tuple[Path, Path],
    ca: Path,
    signer: str,
    inside_good: bool,
) -> bool:
    """``decrypt --require-signature`` with the corpus root in the store: True when it wrote
    the message. Every signature layer has its own warning line; the one inside the
    envelope (the one Thunderbird judges) holds when ``inside_good``."""
    imported = cli(["certs", "import", "--store-name", "root", ca])
    assert imported.exit_code == 0, imported.output
    key, cert = bob
    args = ["decrypt", path, "-o", out, "--key", key, "--cert", cert, "--require-signature"]
    result = cli(args)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    outside, inside = _layers(path.name)
    verdicts = [line for line in lines if line.startswith("smimecli: warning: the signature ")]
    assert sum("outside the envelope" in line for line in verdicts) == outside, result.stderr
    assert sum("inside the envelope" in line for line in verdicts) == inside, result.stderr
    assert f"e={signer}" in verdicts[0].lower(), verdicts[0]
    for line in verdicts:
        if "inside the envelope" in line:
            assert line.endswith(" is valid and trusted") == inside_good, line
    if outside:  # inspect, with no key, judges the same layers around the envelope
        shown = cli(["inspect", "--json", path])
        assert shown.exit_code == 0, shown.output
        judged = [s["status"] for s in json.loads(shown.stdout)["signatures"]]
        said = [line for line in verdicts if "outside the envelope" in line]
        assert judged == [
            "valid" if line.endswith(" is valid and trusted") else "invalid" for line in said
        ], (judged, said)
    if result.exit_code == 0:
        assert all(line.endswith(" is valid and trusted") for line in verdicts), result.stderr
        assert b"enveloped-data" not in out.read_bytes() and out.stat().st_size > 0
        return True
    assert result.exit_code == 65, result.output
    errors = [line for line in lines if line.startswith("smimecli: error: ")]
    assert len(errors) == 1 and str(path) in errors[0], result.stderr
    assert errors[0].endswith("nothing was written") and not out.exists()
    assert " does not hold: " in errors[0]
    return False


def _verify_layers(cli: Cli, path: Path, out: Path, ca: Path, signer: str, layers: int) -> bool:
    """``verify --json`` on the message, then on what -o wrote, once per signature layer:
    True when every layer is valid and trusted. The outermost signer is ``signer``."""
    good = True
    source = path
    for depth in range(layers):
        result = cli(["verify", "--json", "--ca", ca, source, "-o", out])
        assert "Traceback" not in result.stderr
        report = json.loads(result.stdout)
        who = signer if depth == 0 else "alice@example.com"  # Dave signed what Alice signed
        assert report["signer"]["emails"] == [who], report["signer"]
        if report["status"] == "valid":
            assert result.exit_code == 0, result.output
            if depth == 1:  # Alice's layer inside Dave's: From: names Dave
                assert any("not the From: address dave@" in w for w in report["warnings"])
        else:
            assert result.exit_code == 65, result.output
            assert report["status"] == "invalid" and report["reasons"], report
            error = result.stderr.splitlines()[-1]
            assert error.startswith(f"smimecli: error: {source}: the signature does not hold")
            good = False
        if not out.exists():
            break
        source = out.rename(out.with_name(f"layer{depth + 1}.eml"))
    if good:
        assert ALICE_TO_BOB in source.read_bytes() or b"enveloped-data" in source.read_bytes()
    return good

"""TNEF conversion over winmail.dat files written by Outlook and Exchange (shared corpus).

Each sample is wrapped into a message as an application/ms-tnef part and converted; the
attachments must come out with the names and bytes that tnefparse extracts directly and
that MimeKit's expected-output folders hold, the bodies must be there, and the samples that
are broken or are not plain mail must stay in the message byte for byte, with a warning.
"""

from __future__ import annotations

import re
import subprocess
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from tnefparse.tnef import TNEF

from smimecli.tnef.splice import convert_message
from tests.conftest import Cli, Pki, require_tool
from tests.unit.test_tnef import wrap

pytestmark = pytest.mark.interop

# tnefparse/README.txt: attachment long file names in order, and which body must be present.
# "Untitled Attachment" for minimal_attachment: the stream names nothing (tnefparse's test
# uses its own default, unknown.dat).
TNEFPARSE_CONVERTED = {
    "body": ([], "html"),
    "two-files": (["AUTHORS", "README"], None),
    "data-before-name": (["AUTOEXEC.BAT", "CONFIG.SYS", "boot.ini"], "rtf"),
    "MAPI_ATTACH_DATA_OBJ": (
        ["VIA_Nytt_1402.doc", "VIA_Nytt_1402.pdf", "VIA_Nytt_14021.htm"],
        "rtf",
    ),
    "MAPI_OBJECT": (["Untitled_Attachment"], "rtf"),
    "long-filename": (["allproductsmar2000.dat"], "rtf"),
    "missing-filenames": (
        ["generpts.src", "TechlibDEC99.doc", "TechlibDEC99-JAN00.doc", "TechlibNOV99.doc"],
        "rtf",
    ),
    "multi-value-attribute": (["208225__5_seconds__Voice_Mail.mp3"], "rtf"),
    "one-file": (["AUTHORS"], None),
    "rtf": ([], "rtf"),
    "unicode-mapi-attr-name": (
        ["spaconsole2.cfg", "image001.png", "image002.png", "image003.png"],
        "html",
    ),
    # README says "body (plain)": tnefparse takes PR_PREVIEW (0x3FD9, a snippet) for the
    # plain body; the message's real body is HTML.
    "unicode-mapi-attr": (["example.dat"], "html"),
    "umlaut": (["TBZ PARIV GmbH.jpg", "image003.jpg", "UmlautAnhang-äüö.txt"], "rtf"),
    "minimal_attachment": (["Untitled Attachment"], None),
}
# Kept as they are, and why (the words the warning must contain).
TNEFPARSE_KEPT = {
    "bad_checksum": "runs past the end",  # the last attribute lacks its checksum bytes
    "duplicate_filename": "bad checksum",  # MAPI_ATTACH_DATA_OBJ with bytes changed
    "IPM-DistList": "bad checksum",
    "garbage-at-end": "stray bytes",
    "multi-name-property": "IPM.Appointment",
    "triples": "IPM.Appointment",
}
MIMEKIT_CONVERTED = [
    "MAPI_ATTACH_DATA_OBJ",
    "MAPI_OBJECT",
    "attachments",
    "body",
    "christmas",
    "data-before-name",
    "long-filename",
    "missing-filenames",
    "multi-value-attribute",
    "one-file",
    "rtf",
    "two-files",
    "unicode-mapi-attr",
    "unicode-mapi-attr-name",
    "winmail",
]
MIMEKIT_KEPT = {
    "garbage-at-end": "stray bytes",
    "panic": "runs past the end",  # 17 KB of base64 text after the last attribute
    "multi-name-property": "IPM.Appointment",
    "triples": "IPM.Appointment",
}


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def converted_leaves(data: bytes) -> list[EmailMessage]:
    """The leaf parts of the converted subtree (after the outer text part)."""
    leaves = [p for p in parse(data).walk() if not p.is_multipart()]
    assert leaves[0].get_content().strip() == "outer text"
    return leaves[1:]


def payload(part: EmailMessage) -> bytes:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


def same_file(ours: bytes, expected: bytes) -> bool:
    """Equal, or equal once CRLF becomes LF (git normalised MimeKit's text fixtures)."""
    return ours == expected or ours.replace(b"\r\n", b"\n") == expected.replace(b"\r\n", b"\n")


def check_against_tnefparse(stream: bytes, leaves: list[EmailMessage]) -> None:
    """Every attachment tnefparse extracts is there, same order, same bytes."""
    reference = TNEF(stream)
    ours = [
        p
        for p in leaves
        if p.get_filename()
        and p.get_filename() != "body.rtf"
        and p.get_content_type() != "application/ms-tnef"
    ]
    theirs = [a for a in reference.attachments if not hasattr(a, "embed")]
    # Inline images move next to the HTML (multipart/related), so compare without order;
    # tnefparse strips trailing NUL bytes from MAPI attachment data, we do not.
    assert sorted((str(p.get_filename()), payload(p).rstrip(b"\0")) for p in ours) == sorted(
        (a.long_filename() or "Untitled Attachment", a.data.rstrip(b"\0")) for a in theirs
    )


def check_kept(stream: bytes, reason: str) -> None:
    source = wrap(stream)
    result = convert_message(source)
    assert result.converted == 0
    assert result.data == source  # the original part is still there, byte for byte
    assert len(result.warnings) == 1, result.warnings
    assert "kept unchanged" in result.warnings[0] and reason in result.warnings[0]


def tnefparse_dir(interop: Path) -> Path:
    return interop / "tnefparse" / "tests" / "examples"


def mimekit_dir(interop: Path) -> Path:
    return interop / "mimekit" / "UnitTests" / "TestData" / "tnef"


def test_every_tnefparse_sample_is_covered(interop: Path) -> None:
    names = {p.stem for p in tnefparse_dir(interop).glob("*.tnef")}
    assert names == set(TNEFPARSE_CONVERTED) | set(TNEFPARSE_KEPT)


def test_every_mimekit_sample_is_covered(interop: Path) -> None:
    names = {p.stem for p in mimekit_dir(interop).glob("*.tnef")}
    assert names == set(MIMEKIT_CONVERTED) | set(MIMEKIT_KEPT)


@pytest.mark.parametrize("name", sorted(TNEFPARSE_CONVERTED))
def test_tnefparse_sample_converts(interop: Path, name: str) -> None:
    stream = (tnefparse_dir(interop) / f"{name}.tnef").read_bytes()
    result = convert_message(wrap(stream))
    assert (result.converted, result.warnings) == (1, [])
    assert b"application/ms-tnef" not in result.data
    leaves = converted_leaves(result.data)
    expected_names, body = TNEFPARSE_CONVERTED[name]
    names = [str(p.get_filename()) for p in leaves if p.get_filename() not in (None, "body.rtf")]
    assert sorted(names) == sorted(expected_names)
    kinds = {p.get_content_type() for p in leaves if p.get_filename() is None}
    has_rtf = any(p.get_filename() == "body.rtf" for p in leaves)
    if body in ("html", "plain"):
        assert f"text/{body}" in kinds
    assert has_rtf == (body == "rtf")  # the RTF only when there is no other body
    if body is None:
        assert not kinds
    if has_rtf:
        rtf = payload(next(p for p in leaves if p.get_filename() == "body.rtf"))
        assert rtf.startswith(b"{\\rtf")
    check_against_tnefparse(stream, leaves)


@pytest.mark.parametrize("name", sorted(TNEFPARSE_KEPT))
def test_tnefparse_sample_kept(interop: Path, name: str) -> None:
    check_kept((tnefparse_dir(interop) / f"{name}.tnef").read_bytes(), TNEFPARSE_KEPT[name])


@pytest.mark.parametrize("name", MIMEKIT_CONVERTED)
def test_mimekit_sample_matches_expected_output(interop: Path, name: str) -> None:
    folder = mimekit_dir(interop)
    stream = (folder / f"{name}.tnef").read_bytes()
    result = convert_message(wrap(stream))
    assert result.converted == 1, result.warnings
    leaves = converted_leaves(result.data)
    by_name: dict[str, list[bytes]] = {}
    for part in leaves:
        if part.get_filename():
            by_name.setdefault(str(part.get_filename()), []).append(payload(part))
    # The .list files name some of the attachments (not always all of them).
    listed = {n for n in (folder / f"{name}.list").read_text().splitlines() if n}
    ours = {n.removesuffix(".dat") if n.startswith("Untitled Attachment") else n for n in by_name}
    assert listed - {"body.rtf", "body.html"} <= ours
    has_other_body = any(
        p.get_filename() is None and p.get_content_type() in ("text/plain", "text/html")
        for p in leaves
    )
    expected_dir = folder / name
    for expected in sorted(expected_dir.iterdir()) if expected_dir.is_dir() else []:
        data = expected.read_bytes()
        if expected.name == "message.rtf" and has_other_body:
            # MimeKit extracts the RTF even when there is another body; we do not.
            assert "body.rtf" not in by_name
            continue
        if expected.name.startswith("message."):
            kind = {"rtf": "application/rtf", "html": "text/html", "txt": "text/plain"}[
                expected.suffix[1:]
            ]
            part = next(p for p in leaves if p.get_content_type() == kind)
            assert same_file(payload(part).rstrip(b"\0"), data.rstrip(b"\0")), expected.name
        elif expected.name.startswith("Untitled Attachment."):
            # MimeKit writes each unnamed attachment's raw data: an OLE object, or for an
            # embedded Outlook item (a task, an appointment) the placeholder text and the
            # item's TNEF stream, which we attach as it is.
            if not data.startswith(b"This attachment is a MAPI 1.0 embedded message"):
                assert any(data in blobs for blobs in by_name.values()), expected.name
        else:
            assert any(same_file(blob, data) for blob in by_name[expected.name]), expected.name
    if name != "christmas":
        assert result.warnings == []
        assert b"application/ms-tnef" not in result.data
    else:  # its two embedded items are a task and an appointment: kept as TNEF, with warnings
        assert len(result.warnings) == 2 and all("IPM." in w for w in result.warnings)
    check_against_tnefparse(stream, leaves)


@pytest.mark.parametrize("name", sorted(MIMEKIT_KEPT))
def test_mimekit_sample_kept(interop: Path, name: str) -> None:
    check_kept((mimekit_dir(interop) / f"{name}.tnef").read_bytes(), MIMEKIT_KEPT[name])


@pytest.mark.parametrize("name", ["rich-text.eml", "ukr.eml"])
def test_whole_outlook_messages(interop: Path, name: str) -> None:
    source = (mimekit_dir(interop) / name).read_bytes()
    result = convert_message(source)
    assert result.converted == 1
    tnef_at = source.index(b"Content-Type: application/ms-tnef")
    before = source.rfind(b"\n--", 0, tnef_at)
    # everything up to the TNEF part is untouched (rich-text.eml: but its Content-Length)
    head = re.sub(rb"Content-Length: 1111863\r?\n", b"", source[:before])
    assert result.data.startswith(head)
    assert (b"\r\n" in source) == (b"\r\n" in result.data)
    message = parse(result.data)
    names = [p.get_filename() for p in message.walk()]
    assert "winmail.dat" not in names
    original_text = next(p for p in parse(source).walk() if p.get_content_type() == "text/plain")
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert text.get_content() == original_text.get_content()
    if name == "ukr.eml":
        html = next(p for p in message.walk() if p.get_content_type() == "text/html")
        assert html.get_content_charset() == "koi8-r"
        assert "шостий" in html.get_content()
    else:
        assert "body.rtf" in names and "kitten-playing-with-a-christmas-tree.jpg" in names


# --- end to end: encrypt with conversion, decrypt with OpenSSL --------------------------------


def openssl_decrypt(encrypted: bytes, key: Path, cert: Path, tmp_path: Path) -> bytes:
    openssl = require_tool("openssl")
    source = tmp_path / "encrypted.eml"
    source.write_bytes(encrypted)
    proc = subprocess.run(
        [openssl, "cms", "-decrypt", "-in", str(source), "-inkey", str(key), "-recip", str(cert)],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.mark.parametrize("convert", [True, False])
def test_encrypt_converts_winmail_dat(
    cli: Cli, pki: Pki, interop: Path, tmp_path: Path, convert: bool
) -> None:
    stream = (mimekit_dir(interop) / "two-files.tnef").read_bytes()
    source = wrap(stream)
    flag = "--convert-tnef" if convert else "--no-convert-tnef"
    result = cli(["encrypt", "--cert", pki.alice.cert_pem, flag], input=source)
    if result.exit_code == 64 and "not implemented" in result.stderr:
        pytest.skip("smimecli encrypt is not implemented yet (cms-encrypt helper)")
    assert result.exit_code == 0, result.output
    assert b"ms-tnef" not in result.stdout and b"AUTHORS" not in result.stdout
    inner = openssl_decrypt(result.stdout, pki.alice.key_pem, pki.alice.cert_pem, tmp_path)
    tnef_part = source[
        source.index(b"Content-Type: application/ms-tnef") : source.rindex(b"\r\n--XX--")
    ]
    if convert:
        assert b"application/ms-tnef" not in inner
        message = parse(inner)
        files = {str(p.get_filename()): payload(p) for p in message.walk() if p.get_filename()}
        expected = mimekit_dir(interop) / "two-files"
        assert set(files) == {"AUTHORS", "README"}
        for name, data in files.items():
            assert same_file(data, (expected / name).read_bytes())
    else:
        assert tnef_part in inner  # the winmail.dat part, byte for byte

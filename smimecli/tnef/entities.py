"""The plain MIME that replaces a parsed TNEF message: bodies, attachments, embedded messages.

A converted TNEF part becomes a ``multipart/mixed`` entity in the input's line endings
holding the bodies (``multipart/alternative`` for plain + HTML, ``multipart/related`` when
the HTML references inline images by ``cid:``), the RTF body as ``body.rtf`` when there is
no other body, every attachment (base64, so its bytes are exact) and embedded messages as
``message/rfc822``.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import re
import secrets
from dataclasses import dataclass, field
from email.header import Header
from email.utils import format_datetime

from smimecli.mime import base64_lines
from smimecli.tnef.reader import (
    ATTACH_EMBEDDED_MSG,
    CHARSETS,
    DEFAULT_CODEPAGE,
    MAX_ATTACHMENTS,
    MAX_GROWTH,
    PR_ATTACH_CONTENT_ID,
    PR_ATTACH_MIME_TAG,
    PR_BODY,
    PR_BODY_HTML,
    PR_CLIENT_SUBMIT_TIME,
    PR_INTERNET_CPID,
    PR_INTERNET_MESSAGE_ID,
    PR_MESSAGE_CLASS,
    PR_MESSAGE_CODEPAGE,
    PR_RTF_COMPRESSED,
    PR_SENDER_EMAIL,
    PR_SENDER_NAME,
    PR_SENT_REPRESENTING_EMAIL,
    PR_SENT_REPRESENTING_NAME,
    PR_SUBJECT,
    PR_TRANSPORT_MESSAGE_HEADERS,
    OverLimitError,
    TnefAttachment,
    TnefFormatError,
    TnefMessage,
    failure_reason,
    parse_tnef,
)

# How deep embedded TNEF messages may nest before they stay attached as TNEF.
MAX_EMBED_DEPTH = 8


@dataclass
class _Entity:
    """A MIME entity to write: a leaf (body bytes) or a multipart (children)."""

    content_type: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: list[bytes] = field(default_factory=list)  # already formatted, no line end
    body: bytes = b""
    children: list[_Entity] = field(default_factory=list)

    def render(self, eol: bytes) -> bytes:
        """Content-Type and the other headers, a blank line, the body."""
        params = list(self.params)
        rendered = [child.render(eol) for child in self.children]
        if self.children:
            # A fresh boundary, checked against what it encloses (RFC 2046 5.1.1).
            while True:
                boundary = "=_smimecli_" + secrets.token_hex(12)
                if not any(boundary.encode("ascii") in part for part in rendered):
                    break
            params.append(("boundary", boundary))
        lines = [_header_with_params("Content-Type", self.content_type, params, eol)]
        lines.extend(header + eol for header in self.headers)
        out = [*lines, eol]
        if self.children:
            delimiter = b"--" + params[-1][1].encode("ascii")
            for part in rendered:
                out.extend([delimiter, eol, part, eol])
            out.extend([delimiter, b"--", eol])
        else:
            out.append(self.body)
        return b"".join(out)


_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z|~]+")
# RFC 2231 section 7 attribute-char: what may stay unescaped in an extended value.
_ATTR_CHAR = frozenset(
    b"!#$&+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


def _header_with_params(name: str, value: str, params: list[tuple[str, str]], eol: bytes) -> bytes:
    """A header with one parameter per folded line; RFC 2231 for non-ASCII or long values."""
    lines = [f"{name}: {value}"]
    for key, val in params:
        if val.isascii() and val.isprintable() and len(val) <= 60:
            quoted = val if _TOKEN.fullmatch(val) else '"' + re.sub(r'(["\\])', r"\\\1", val) + '"'
            lines.append(f"{key}={quoted}")
            continue
        # RFC 2231 sections 3 and 4: charset'', percent-encoding, numbered continuations.
        encoded = "".join(chr(b) if b in _ATTR_CHAR else f"%{b:02X}" for b in val.encode())
        chunks: list[str] = []
        rest = "utf-8''" + encoded
        while rest:
            cut = min(len(rest), 60)
            while cut < len(rest) and "%" in rest[max(0, cut - 2) : cut]:
                cut -= 1
            chunks.append(rest[:cut])
            rest = rest[cut:]
        for index, chunk in enumerate(chunks):
            lines.append(f"{key}*{index}*={chunk}" if len(chunks) > 1 else f"{key}*={chunk}")
    text = (";" + eol.decode() + "\t").join(lines) + eol.decode()
    return text.encode("ascii")


def _text_entity(subtype: str, raw: bytes, charset: str, eol: bytes) -> _Entity:
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if (
        raw.isascii()
        and b"\r" not in raw.replace(b"\r\n", b"")
        and b"\x00" not in raw
        and all(len(line) <= 998 and not line.startswith(b"--") for line in lines)
    ):
        # RFC 2045 section 2.7: short ASCII lines may go as 7bit, in the output's line ends.
        # A line starting with "--" could close an enclosing part (the boundary of the
        # message around the TNEF part is not ours to choose): base64 then.
        body = eol.join(lines)
        if not body.endswith(eol):
            body += eol
        cte = "7bit"
        charset = "us-ascii" if charset in ("windows-1252", "utf-8") else charset
    else:
        body, cte = base64_lines(raw, eol), "base64"
    return _Entity(
        f"text/{subtype}",
        [("charset", charset)],
        [f"Content-Transfer-Encoding: {cte}".encode()],
        body,
    )


def _charset(codepage: object) -> str:
    if isinstance(codepage, int) and codepage in CHARSETS:
        return CHARSETS[codepage]
    return CHARSETS[DEFAULT_CODEPAGE]


def _body_bytes(value: object, codepage: int) -> tuple[bytes, str] | None:
    """A body property as (bytes, charset label): strings re-encoded, binary kept as is."""
    if isinstance(value, str):
        if not value.strip("\x00 \r\n"):
            return None
        return value.encode("utf-8"), "utf-8"
    if isinstance(value, bytes):
        raw = value.rstrip(b"\x00")  # string properties end with a NUL terminator
        return (raw, _charset(codepage)) if raw.strip() else None
    return None


@dataclass
class Work:
    """What converting one TNEF part may still cost, and the notes it made."""

    output_left: int
    attachments: int = 0
    notes: list[str] = field(default_factory=list)

    def count_attachments(self, count: int) -> None:
        self.attachments += count
        if self.attachments > MAX_ATTACHMENTS:
            raise OverLimitError(f"more than {MAX_ATTACHMENTS:,} attachments")

    def charge(self, size: int) -> None:
        self.output_left -= size
        if self.output_left < 0:
            raise OverLimitError(
                f"its MIME would be more than {MAX_GROWTH} times the size of the TNEF part"
            )


def message_entity(message: TnefMessage, eol: bytes, *, depth: int, work: Work) -> _Entity:
    """The multipart/mixed entity that replaces a TNEF message (or its embedded copy)."""
    klass = message.prop_str(PR_MESSAGE_CLASS) or message.message_class or "IPM.Note"
    if not _is_note(klass):
        raise TnefFormatError(
            f"message class {klass!r} is not a plain note (meeting request, task, contact...)"
        )
    codepage = message.codepage
    cpid = message.props.get(PR_INTERNET_CPID)
    text_cp = message.props.get(PR_MESSAGE_CODEPAGE)
    text_cp = text_cp if isinstance(text_cp, int) and text_cp in CHARSETS else codepage
    plain = _body_bytes(message.props.get(PR_BODY), text_cp)
    if plain is None and message.legacy_body:
        plain = _body_bytes(message.legacy_body, codepage)
    html_value = message.props.get(PR_BODY_HTML)
    html = _body_bytes(html_value, cpid if isinstance(cpid, int) else codepage)

    children: list[_Entity] = []
    related: list[_Entity] = []
    html_bytes = html[0] if html else b""
    for attachment in message.attachments:
        part = _attachment_entity(attachment, eol, depth=depth, work=work)
        work.charge(len(part.body) + 256)
        cid = attachment.prop_str(PR_ATTACH_CONTENT_ID)
        if cid and html and b"cid:" + cid.strip("<>").encode("utf-8", "replace") in html_bytes:
            related.append(part)
        else:
            children.append(part)

    bodies: list[_Entity] = []
    if plain:
        bodies.append(_text_entity("plain", plain[0], plain[1], eol))
    if html:
        html_part = _text_entity("html", html[0], html[1], eol)
        if related:
            html_part = _Entity(
                "multipart/related", [("type", "text/html")], children=[html_part, *related]
            )
        bodies.append(html_part)
    if len(bodies) == 2:
        bodies = [_Entity("multipart/alternative", children=bodies)]
    rtf = message.props.get(PR_RTF_COMPRESSED)
    if not bodies and isinstance(rtf, bytes):
        from compressed_rtf import decompress

        decompressed = bytes(decompress(rtf))
        bodies.append(_file_entity(decompressed, "body.rtf", "application/rtf", eol))
    if not bodies and not children:
        raise TnefFormatError("it holds neither a body nor an attachment")
    return _Entity("multipart/mixed", children=bodies + children)


def _is_note(message_class: str) -> bool:
    klass = message_class.strip().lower()
    return klass in ("ipm", "ipm.note", "ipm.microsoft mail.note") or klass.startswith(
        ("ipm.note.", "ipm.microsoft mail.note.")
    )


def _safe_name(name: str | None) -> str:
    """The last path component, without control characters (it becomes a file name)."""
    if not name:
        return "Untitled Attachment"
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base or "Untitled Attachment"


def _attachment_entity(
    attachment: TnefAttachment, eol: bytes, *, depth: int, work: Work
) -> _Entity:
    name = _safe_name(attachment.file_name)
    embedded = attachment.embedded
    if embedded is not None and attachment.method == ATTACH_EMBEDDED_MSG:
        if depth < MAX_EMBED_DEPTH:
            try:
                inner = parse_tnef(embedded, limit=MAX_ATTACHMENTS - work.attachments)
                work.count_attachments(len(inner.attachments))
                return _embedded_entity(inner, name, eol, depth=depth + 1, work=work)
            except OverLimitError:
                raise
            except Exception as exc:  # keep the embedded stream itself, as a TNEF file
                work.notes.append(
                    f"embedded message {name!r} attached as TNEF: {failure_reason(exc)}"
                )
        else:
            work.notes.append(f"embedded message {name!r} nested too deep: attached as TNEF")
        return _file_entity(embedded, name + ".dat", "application/ms-tnef", eol)
    mime_tag = (attachment.prop_str(PR_ATTACH_MIME_TAG) or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", mime_tag):
        mime_tag = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    cid = attachment.prop_str(PR_ATTACH_CONTENT_ID)
    entity = _file_entity(attachment.content, name, mime_tag, eol)
    if cid and cid.isascii() and re.fullmatch(r"<?[^<>\s]+>?", cid):
        entity.headers.append(f"Content-ID: <{cid.strip('<>')}>".encode("ascii"))
    return entity


def _file_entity(data: bytes, name: str, content_type: str, eol: bytes) -> _Entity:
    disposition = _header_with_params(
        "Content-Disposition", "attachment", [("filename", name)], eol
    )
    return _Entity(
        content_type,
        [("name", name)],
        [b"Content-Transfer-Encoding: base64", disposition[: -len(eol)]],
        base64_lines(data, eol),
    )


def _embedded_entity(
    message: TnefMessage, name: str, eol: bytes, *, depth: int, work: Work
) -> _Entity:
    """An embedded message as message/rfc822 (RFC 2046 section 5.2.1: 7bit only)."""
    body = message_entity(message, eol, depth=depth, work=work)
    headers: list[bytes] = []
    transport = message.prop_str(PR_TRANSPORT_MESSAGE_HEADERS)
    if transport and transport.isascii():
        lines = transport.replace("\r\n", "\n").strip("\n").split("\n")
        lines = lines[: lines.index("")] if "" in lines else lines
        block = eol.join(line.encode("ascii") for line in lines) + eol
        headers = [
            field_lines[: -len(eol)]
            for field_lines in non_content_headers(block, eol)
            if field_name(field_lines) != b"mime-version"
            and b":" in field_lines
            and not field_lines.startswith(b"-")  # never a boundary line of the parts around
        ]
    if not headers:
        headers = _synthetic_headers(message, eol)
    headers.append(b"MIME-Version: 1.0")
    inner = eol.join(headers) + eol + body.render(eol)
    filename = name if name.lower().endswith(".eml") else name + ".eml"
    disposition = _header_with_params(
        "Content-Disposition", "attachment", [("filename", filename)], eol
    )
    return _Entity(
        "message/rfc822", [], [b"Content-Transfer-Encoding: 7bit", disposition[: -len(eol)]], inner
    )


def _encoded(name: str, value: str, eol: bytes) -> bytes:
    if value.isascii() and value.isprintable():
        return f"{name}: {value}".encode("ascii")
    # RFC 2047 encoded-words for non-ASCII header text.
    folded = Header(value, "utf-8", header_name=name).encode(linesep=eol.decode())
    return f"{name}: {folded}".encode("ascii")


def _synthetic_headers(message: TnefMessage, eol: bytes) -> list[bytes]:
    headers: list[bytes] = []
    sender = message.prop_str(PR_SENT_REPRESENTING_NAME) or message.prop_str(PR_SENDER_NAME)
    address = message.prop_str(PR_SENT_REPRESENTING_EMAIL) or message.prop_str(PR_SENDER_EMAIL)
    if address and "@" not in address:
        address = None  # an Exchange X.500 DN is no mail address
    if sender or address:
        shown = " ".join(filter(None, [sender, f"<{address}>" if address else None]))
        headers.append(_encoded("From", shown, eol))
    subject = message.prop_str(PR_SUBJECT) or message.subject
    if subject:
        headers.append(_encoded("Subject", subject, eol))
    when = message.props.get(PR_CLIENT_SUBMIT_TIME) or message.date_sent
    if isinstance(when, dt.datetime):
        headers.append(f"Date: {format_datetime(when)}".encode("ascii"))
    message_id = message.prop_str(PR_INTERNET_MESSAGE_ID)
    if message_id and message_id.isascii():
        headers.append(f"Message-ID: {message_id.strip()}".encode("ascii"))
    return headers


# --- header fields ---------------------------------------------------------------------------


def field_name(line: bytes) -> bytes:
    return line.split(b":", 1)[0].strip().lower()


def header_fields(block: bytes) -> list[list[bytes]]:
    """The header fields of a header block, each as its lines (folded ones included)."""
    fields: list[list[bytes]] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def non_content_headers(block: bytes, eol: bytes) -> list[bytes]:
    """The header fields (with their folded lines) whose names do not start with Content-."""
    kept: list[bytes] = []
    for lines in header_fields(block):
        if field_name(lines[0]).startswith(b"content-"):
            continue
        text = b"".join(lines)
        kept.append(text if text.endswith(b"\n") else text + eol)
    return kept

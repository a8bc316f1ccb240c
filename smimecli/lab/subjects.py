"""Subject strings, read the way ``New-SelfSignedCertificate`` reads them.

Subject strings are read the Windows way (``CertStrToName`` with X.500 names): the most
specific attribute first, ``E=`` for emailAddress, ``S=`` for stateOrProvinceName, values
quoted with double quotes (Windows) or escaped with backslashes (RFC 4514, the way smimecli
shows subjects) when they hold a separator. The certificate encodes the RDNs in
the reverse order (country first), exactly as Windows does, so that ``openssl x509 -subject``
shows ``CN = SMIME Tester 2048, emailAddress = test@example.net`` for the lab subject
``E=test@example.net,CN=SMIME Tester 2048``.
"""

from __future__ import annotations

import re
from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from smimecli.certs import names
from smimecli.errors import UsageError

# --- subject strings ----------------------------------------------------------------------

# The attribute names --subject takes: the labels subjects are shown with (one table, in
# smimecli.certs.names), plus other common spellings of the same attributes.
_NAME_KEYS: Final[dict[str, ObjectIdentifier]] = {
    **{label: ObjectIdentifier(oid) for oid, label in names.NAME_LABELS.items()},
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "TITLE": NameOID.TITLE,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
}
# Attributes encoded as IA5String, which only holds ASCII (RFC 5280 appendix A.1).
_ASCII_ONLY: Final = {NameOID.EMAIL_ADDRESS, NameOID.DOMAIN_COMPONENT}
_SEPARATORS: Final = ",;+"


def _subject_error(text: str, why: str) -> UsageError:
    return UsageError(
        f"unparsable subject {text!r}: {why} "
        '(write it like "E=user@example.net,CN=Name,O=\\"Example, Inc.\\",C=US")'
    )


def _split_subject(text: str) -> list[list[tuple[str, str]]]:
    """Cut a Windows X.500 string into RDNs of (key, value) pairs, in string order.

    ``,`` and ``;`` separate RDNs, ``+`` separates the attributes of a multi-valued RDN. A
    value in double quotes may hold separators; ``""`` inside quotes is one quote character.
    Outside quotes, RFC 4514 section 3 escapes work too (``O=Example\\, Inc.``, ``\\2C``), so
    that every subject smimecli prints (smimecli.certs.names.display_name) reads back.
    """
    rdns: list[list[tuple[str, str]]] = [[]]
    i, n = 0, len(text)
    while True:
        eq = text.find("=", i)
        if eq < 0:
            raise _subject_error(text, f"{text[i:].strip()!r} has no '='")
        key = text[i:eq].strip()
        if not key or any(sep in key for sep in _SEPARATORS):
            bad = key.split(",")[0].split(";")[0].split("+")[0].strip() or key
            raise _subject_error(text, f"{bad!r} has no '=' or an empty name")
        j = eq + 1
        while j < n and text[j] == " ":
            j += 1
        if j < n and text[j] == '"':
            chars: list[str] = []
            j += 1
            while True:
                if j >= n:
                    raise _subject_error(text, f"the quoted value of {key} is not closed")
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        chars.append('"')
                        j += 2
                        continue
                    j += 1
                    break
                chars.append(text[j])
                j += 1
            value = "".join(chars)
            while j < n and text[j] == " ":
                j += 1
            if j < n and text[j] not in _SEPARATORS:
                raise _subject_error(text, f"unexpected text after the quoted value of {key}")
        else:
            value, j = _unquoted_value(text, j, key)
        if not value:
            raise _subject_error(text, f"{key} has an empty value")
        rdns[-1].append((key, value))
        if j >= n:
            return rdns
        if text[j] != "+":
            rdns.append([])
        i = j + 1
        if not text[i:].strip():
            raise _subject_error(text, "it ends with a separator")


_HEX_PAIR: Final = re.compile(r"(?:\\[0-9A-Fa-f]{2})+")


def _unquoted_value(text: str, j: int, key: str) -> tuple[str, int]:
    """The value that starts at ``text[j]`` up to the next unescaped separator, and where it
    ends. A backslash takes the next character literally, or a run of ``\\XX`` hex pairs
    as UTF-8 (RFC 4514 section 3); spaces around the value go, escaped ones stay."""
    chars: list[str] = []
    escaped: list[int] = []  # where escaped characters went: spaces there are kept
    n = len(text)
    while j < n and text[j] not in _SEPARATORS:
        if text[j] == '"':
            raise _subject_error(text, f"a quote inside the value of {key}")
        if text[j] == "\\":
            pairs = _HEX_PAIR.match(text, j)
            if pairs:
                raw = bytes.fromhex(pairs.group().replace("\\", ""))
                try:
                    decoded = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _subject_error(text, f"the escapes in {key} are not UTF-8") from None
                j = pairs.end()
            elif j + 1 < n:
                decoded = text[j + 1]
                j += 2
            else:
                raise _subject_error(text, f"the value of {key} ends with a backslash")
            escaped.extend(range(len(chars), len(chars) + len(decoded)))
            chars.extend(decoded)
            continue
        chars.append(text[j])
        j += 1
    first = escaped[0] if escaped else len(chars)
    last = escaped[-1] + 1 if escaped else 0
    start = 0
    while start < first and chars[start] == " ":
        start += 1
    end = len(chars)
    while end > max(start, last) and chars[end - 1] == " ":
        end -= 1
    return "".join(chars[start:end]), j


def _name_oid(text: str, key: str) -> ObjectIdentifier:
    upper = key.upper()
    if upper in _NAME_KEYS:
        return _NAME_KEYS[upper]
    dotted = key[4:] if upper.startswith("OID.") else key
    parts = dotted.split(".")
    if len(parts) >= 2 and all(part.isdigit() for part in parts):
        return ObjectIdentifier(dotted)
    known = ", ".join(sorted(set(names.NAME_LABELS.values())))
    raise _subject_error(text, f"unknown attribute {key!r} (use {known} or OID.n.n.n)")


def parse_subject(text: str) -> x509.Name:
    """Parse a Windows-style subject string into a certificate Name.

    The string lists the most specific attribute first (as Windows and RFC 4514 show it);
    the Name holds the RDNs in the reverse, encoded order, as ``New-SelfSignedCertificate``
    writes them.

    Raises:
        UsageError: the string cannot be parsed (exit 64).
    """
    if not text.strip():
        raise _subject_error(text, "it is empty")
    rdns: list[x509.RelativeDistinguishedName] = []
    for pairs in _split_subject(text):
        attributes = []
        for key, value in pairs:
            oid = _name_oid(text, key)
            if oid in _ASCII_ONLY and not value.isascii():
                raise _subject_error(text, f"{key} must be ASCII")
            try:
                attributes.append(x509.NameAttribute(oid, value))
            except ValueError as exc:
                raise _subject_error(text, f"bad {key} value: {exc}") from None
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(list(reversed(rdns)))

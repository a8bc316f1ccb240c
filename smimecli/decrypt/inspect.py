"""Describing an S/MIME message without any key (``smimecli inspect``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from smimecli.certs.names import display_asn1_name
from smimecli.cms import OID_AUTH_ENVELOPED_DATA, OID_ENVELOPED_DATA, OID_SIGNED_DATA
from smimecli.cms.ber import BerReader, Tlv
from smimecli.cms.open import CONTENT_TYPES, EnvelopeHead, read_head
from smimecli.cms.unwrap import RecipientEntry
from smimecli.decrypt.keys import StoreFinder
from smimecli.decrypt.locate import open_envelope
from smimecli.decrypt.unsign import SignedOnlyError
from smimecli.errors import DataError
from smimecli.mime import HeaderBlock


@dataclass
class InspectReport:
    """What ``smimecli inspect`` shows."""

    headers: list[tuple[str, str]]
    content_type: str
    content_type_oid: str
    cipher: dict[str, Any] | None = None
    recipients: list[dict[str, Any]] = field(default_factory=list)
    signature_layers: int = 0  # unverified signatures around the envelope

    def as_json(self) -> dict[str, Any]:
        """The report as one JSON document."""
        return {
            "headers": [{"name": n, "value": v} for n, v in self.headers],
            "content_type": self.content_type,
            "content_type_oid": self.content_type_oid,
            "cipher": self.cipher,
            "recipients": self.recipients,
            "signature_layers": self.signature_layers,
        }


def _cipher_info(head: EnvelopeHead) -> dict[str, Any]:
    from smimecli.cms.algorithms import parse_algorithm_identifier

    oid = head.content_algorithm_oid
    try:
        parsed = parse_algorithm_identifier(head.content_algorithm_der)
    except DataError:
        return {"name": oid, "oid": oid, "key_bits": None, "supported": False}
    bits = parsed.cipher.effective_bits or parsed.cipher.key_size * 8
    return {"name": parsed.name, "oid": oid, "key_bits": bits, "supported": True}


def _recipient_info(entry: RecipientEntry, finder: StoreFinder | None) -> dict[str, Any]:
    rid = entry.rid
    ident: dict[str, Any] = {"type": rid.kind}
    if rid.kind == "issuer_serial" and rid.issuer is not None:
        ident["issuer"] = display_asn1_name(rid.issuer)
        ident["serial"] = f"{rid.serial:X}"
    else:
        ident["key_id"] = (rid.key_id or b"").hex().upper()
    info: dict[str, Any] = {
        "kind": entry.kind,
        "id": ident,
        "key_encryption": entry.algorithm,
        "key_encryption_oid": entry.algorithm_oid,
    }
    if entry.kind == "ktri" and entry.hash is not None:
        info["oaep_hash"] = entry.hash
        info["mgf1_hash"] = entry.mgf_hash
        info["oaep_label"] = (entry.label or b"").hex()
    if entry.kind == "kari":
        info["kdf_hash"] = entry.hash
        info["key_wrap"] = entry.wrap
    matches = finder(rid) if finder is not None and rid.kind != "kek_id" else []
    info["store"] = [m.__dict__ for m in matches]
    return info


def inspect_message(
    src: BinaryIO, *, store_finder: StoreFinder | None = None, what: str = "the message"
) -> InspectReport:
    """Describe an S/MIME message without any key: headers, CMS type, cipher, recipients."""
    try:
        opened = open_envelope(src, what)
    except SignedOnlyError as exc:
        return InspectReport(
            _header_list(exc.headers),
            "signed-data",
            OID_SIGNED_DATA,
            signature_layers=exc.layers,
        )
    headers = _header_list(opened.headers)
    layers = len(opened.layers)
    head = _read_any_head(opened.reader, what, opened.known)
    if isinstance(head, str):
        return InspectReport(headers, CONTENT_TYPES.get(head, head), head, signature_layers=layers)
    report = InspectReport(
        headers, head.content_type_name, head.content_type, signature_layers=layers
    )
    report.cipher = _cipher_info(head)
    report.recipients = [_recipient_info(e, store_finder) for e in head.recipients]
    return report


def _header_list(block: HeaderBlock | None) -> list[tuple[str, str]]:
    return [(f.name, f.value) for f in block.fields] if block is not None else []


def _read_any_head(
    reader: BerReader, what: str, known: tuple[str, list[Iterator[Tlv]]]
) -> EnvelopeHead | str:
    """The envelope head, or just the content type OID of another kind of CMS."""
    oid, levels = known
    if oid not in (OID_ENVELOPED_DATA, OID_AUTH_ENVELOPED_DATA):
        return oid
    return read_head(reader, what=what, parse_cipher=False, known=(oid, levels))

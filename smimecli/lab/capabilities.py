"""The SMIMECapabilities certificate extension of lab user certificates.

It carries the same list, in the same order, as the SMIMECapabilities signed attribute that
``smimecli sign`` puts in every signature (:data:`smimecli.cms.signed.SMIME_CAPABILITIES`):
a sender choosing a cipher (``cipher = "auto"``) reads the same thing from a lab
certificate as from a signature harvested from the same person.
"""

from __future__ import annotations

from typing import Final

from cryptography.x509.oid import ObjectIdentifier

from smimecli.cms.signed import SMIME_CAPABILITIES

# RFC 8551 section 2.5.2: sMIMECapabilities, here as a certificate extension the way
# Windows CAs write it (RFC 4262), so that senders pick a cipher the recipient reads.
SMIME_CAPABILITIES_OID: Final = ObjectIdentifier("1.2.840.113549.1.9.15")


def smime_capabilities_der() -> bytes:
    """The SMIMECapabilities value: AES-256/128-GCM, AES-256/192/128-CBC, RSAES-OAEP.

    Strongest first (RFC 8551 section 2.5.2 orders by preference); the capabilities carry no
    parameters (RFC 3565 section 5, RFC 5084 section 3), exactly as in a signature.
    """
    from asn1crypto import cms

    value = cms.SMIMECapabilites([{"capability_id": dotted} for _, dotted in SMIME_CAPABILITIES])
    data: bytes = value.dump()
    return data

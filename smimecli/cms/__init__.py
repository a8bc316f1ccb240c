"""CMS (RFC 5652) on asn1crypto and cryptography primitives.

``envelope`` builds EnvelopedData / AuthEnvelopedData in constant memory, ``recipients``
the RecipientInfos, ``algorithms`` the content ciphers both directions share, ``rc2`` the
legacy RC2 cipher, and ``der`` the few TLV writers the streaming framing needs.
"""

from typing import BinaryIO

# RFC 5652 section 4 / 5.1 / 6.1 and RFC 5083 section 1: the ContentInfo content types.
OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"

SPOOL_IN_MEMORY = 8 << 20  # a spooled stream goes to a temporary file beyond this


def spool(in_memory: int = SPOOL_IN_MEMORY) -> BinaryIO:
    """A temporary file held in memory up to ``in_memory`` bytes, beyond in an unnamed
    0600 file in $TMPDIR (gone however the process ends)."""
    import tempfile  # not every run spools

    return tempfile.SpooledTemporaryFile(max_size=in_memory)  # type: ignore[return-value]

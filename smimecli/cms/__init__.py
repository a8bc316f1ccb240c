"""CMS (RFC 5652) on asn1crypto and cryptography primitives.

``envelope`` builds EnvelopedData / AuthEnvelopedData in constant memory, ``recipients``
the RecipientInfos, ``algorithms`` the content ciphers both directions share, ``rc2`` the
legacy RC2 cipher, and ``der`` the few TLV writers the streaming framing needs.
"""

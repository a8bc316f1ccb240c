"""MIME primitives both directions share, written for streams of any size.

Only the top-level header block of a message is ever parsed; bodies are streamed. Header
fields are kept as their raw lines (folding and line endings untouched) so that outer headers
pass through byte for byte. The encrypted inner entity is converted to CRLF line endings
(RFC 8551 section 3.1.1, canonical form), and the smime.p7m wrapper (RFC 8551 section 3.3) is
written with the input's line ending.

Modules: :mod:`~smimecli.mime.headers` (header fields, Content-Type),
:mod:`~smimecli.mime.reading` (the header block from a stream),
:mod:`~smimecli.mime.canonical` (line endings), :mod:`~smimecli.mime.sniff` (already
encrypted?) and :mod:`~smimecli.mime.wrap` (the smime.p7m wrapper, base64 lines). Every
name is importable from ``smimecli.mime`` itself.
"""

from __future__ import annotations

from smimecli.mime.canonical import (
    CRLF,
    LF,
    CanonicalCounter,
    Canonicalizer,
    canonical_bytes,
    canonicalize,
)
from smimecli.mime.headers import (
    MAX_HEADER_BLOCK,
    ContentType,
    HeaderBlock,
    HeaderField,
    parse_content_type,
    parse_header_block,
    parse_parameters,
)
from smimecli.mime.reading import (
    MAX_LINE,
    LineReader,
    PeekedStream,
    not_a_message,
    read_header_block,
)
from smimecli.mime.sniff import (
    PKCS7_TYPES,
    has_p7m_name,
    is_encrypted,
    looks_like_enveloped_cms,
    sniff_encrypted,
)
from smimecli.mime.wrap import (
    BATCH_BYTES,
    BATCH_LINES,
    LINE_BYTES,
    LINE_CHARS,
    Base64LineWriter,
    base64_lines,
    inner_entity_header,
    smime_headers,
    wrapper_header_block,
)

__all__ = [
    "BATCH_BYTES",
    "BATCH_LINES",
    "CRLF",
    "LF",
    "LINE_BYTES",
    "LINE_CHARS",
    "MAX_HEADER_BLOCK",
    "MAX_LINE",
    "PKCS7_TYPES",
    "Base64LineWriter",
    "CanonicalCounter",
    "Canonicalizer",
    "ContentType",
    "HeaderBlock",
    "HeaderField",
    "LineReader",
    "PeekedStream",
    "base64_lines",
    "canonical_bytes",
    "canonicalize",
    "has_p7m_name",
    "inner_entity_header",
    "is_encrypted",
    "looks_like_enveloped_cms",
    "not_a_message",
    "parse_content_type",
    "parse_header_block",
    "parse_parameters",
    "read_header_block",
    "smime_headers",
    "sniff_encrypted",
    "wrapper_header_block",
]

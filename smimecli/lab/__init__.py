"""The lab CA: test roots, user certificates, CRLs (gen-root, issue-user, gen-ca, gen-crl).

Certificates built like PowerShell's ``New-SelfSignedCertificate``: a self-signed root CA,
intermediate CAs and S/MIME user certificates issued from them, with the extensions
Outlook, Thunderbird, OpenSSL and gpgsm expect (RFC 5280 profile, RFC 8550 section 4.4 for
S/MIME end-entity certificates). Everything is validated before any key is generated, so
a bad option costs nothing and writes nothing.

The modules: :mod:`~smimecli.lab.subjects` (subject strings), :mod:`~smimecli.lab.options`
(key specs, key usage, hashes, dates), :mod:`~smimecli.lab.issuing` (``Issued``,
``Signer``), :mod:`~smimecli.lab.root` (``gen-root``, ``gen-ca``), :mod:`~smimecli.lab.user`
(``issue-user``, requests), :mod:`~smimecli.lab.crl` (``gen-crl``),
:mod:`~smimecli.lab.capabilities` (the SMIMECapabilities extension) and
:mod:`~smimecli.lab.outputs` (the .pfx, key and certificate files). The names below are
their public API, importable from ``smimecli.lab`` directly.
"""

from smimecli.lab.capabilities import SMIME_CAPABILITIES_OID, smime_capabilities_der
from smimecli.lab.crl import Revoked, crl_bytes, make_crl, revoke_in_store, stored_revocations
from smimecli.lab.issuing import Issued, Signer
from smimecli.lab.options import (
    DEFAULT_ROOT_KEY_USAGE,
    HASHES,
    KEY_ALGORITHMS,
    PROFILES,
    KeySpec,
    parse_date,
    parse_key_usage,
    random_serial,
)
from smimecli.lab.outputs import OutputFile, output_files
from smimecli.lab.root import CASpec, RootSpec, make_ca, make_root
from smimecli.lab.subjects import parse_subject
from smimecli.lab.user import UserSpec, csr_emails, issue_user, load_csr

__all__ = [
    "DEFAULT_ROOT_KEY_USAGE",
    "HASHES",
    "KEY_ALGORITHMS",
    "PROFILES",
    "SMIME_CAPABILITIES_OID",
    "CASpec",
    "Issued",
    "KeySpec",
    "OutputFile",
    "Revoked",
    "RootSpec",
    "Signer",
    "UserSpec",
    "crl_bytes",
    "csr_emails",
    "issue_user",
    "load_csr",
    "make_ca",
    "make_crl",
    "make_root",
    "output_files",
    "parse_date",
    "parse_key_usage",
    "parse_subject",
    "random_serial",
    "revoke_in_store",
    "smime_capabilities_der",
    "stored_revocations",
]

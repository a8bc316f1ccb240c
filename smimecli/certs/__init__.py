"""Certificates: file formats, the SQLite store, usable-certificate checks and sources.

Modules (import the one you need; this package root imports nothing heavy):

- :mod:`smimecli.certs.formats`: ``load_certificates`` / ``load_certificate_file`` detect
  PEM, DER, PKCS#7, PKCS#12, .sst and signed mail by content and return ``CertEntry`` lists
  (with the ``notices`` of what was skipped).
- :mod:`smimecli.certs.pem`: PEM blocks and labels (certificate and key files).
- :mod:`smimecli.certs.keys`: a private key and the certificates that come with it.
- :mod:`smimecli.certs.importing`: which store an imported certificate goes to; one
  transaction for all the files.
- :mod:`smimecli.certs.export`: the export formats (chosen from the file extension).
- :mod:`smimecli.certs.info`: what ``certs list``, ``show`` and ``verify`` report.
- :mod:`smimecli.certs.pfx`: ``write_pfx`` (modern AES-256 or legacy 3DES as Windows writes).
- :mod:`smimecli.certs.sst`: read and write Microsoft serialized certificate stores.
- :mod:`smimecli.certs.store`: ``Store`` (SQLite) with selectors and key lookups.
- :mod:`smimecli.certs.usable`: ``problems`` and ``best``.
- :mod:`smimecli.certs.sources`: ``CertificateSource`` and its implementations.
- :mod:`smimecli.certs.names`: thumbprints, e-mail addresses and display names.
"""

"""The EXIT STATUS section of each command's man page: the statuses it can give, in its words.

``STATUSES`` maps a command path, spelled as the completion scripts spell it ("encrypt",
"certs import"), to its (code, meaning) pairs. The root page, smimecli(1), lists every
status of :class:`smimecli.errors.ExitStatus` with the general meaning instead
(``tools.gen_docs.exit_statuses``). tests/test_docs.py checks that every command of the
CLI has an entry here and that every code is a real exit status.
"""

from __future__ import annotations

_BUG = (
    70,
    "Internal error (a bug): one line on standard error, the traceback only with --verbose.",
)
_USAGE = (64, "Bad options or arguments; the message names the option.")
_STORE_LOCKED = (75, "The certificate store is locked by another process: try again later.")
_STORE_CONFIG = (78, "The certificate store folder or database is unusable (configuration error).")
_STORE_PASSPHRASE = (
    77,
    "The store's private keys are encrypted and SMIMECLI_STORE_PASSWORD is missing or wrong.",
)
_DISK = (74, "I/O error while reading or writing: disk full, a broken pipe, a device error.")
_GROUP = [
    (0, "Help shown (the group's commands give their own statuses: see their pages)."),
    (64, "Unknown command or option."),
]

STATUSES: dict[str, list[tuple[int, str]]] = {
    "encrypt": [
        (
            0,
            "Done: every message encrypted, or passed through unchanged as the rules allow "
            "(no certificate and on_missing_cert = pass, or already encrypted).",
        ),
        _USAGE,
        (65, "An input is not a usable message, or a --cert file is not a usable certificate."),
        (66, "An input, a --cert file, the --rules file or a password file is missing."),
        (
            67,
            "A recipient has no usable certificate and its rule (or --on-missing-cert) says "
            "reject; nothing was written.",
        ),
        _BUG,
        (73, "An output file cannot be created (it exists without --force, or no permission)."),
        _DISK,
        (
            75,
            "Retry later: a recipient's rule says tempfail, the store is locked, or a batch "
            "worker died; nothing was written for that message.",
        ),
        (77, "Wrong password for a --cert .pfx file."),
        (78, "The rules file or one of its certificate sources is wrong (see smimecli-rules(5))."),
    ],
    "decrypt": [
        (0, "Decrypted."),
        _USAGE,
        (
            65,
            "The input is not an S/MIME enveloped message, or it is damaged or altered "
            "(an AES-GCM tag that does not hold).",
        ),
        (66, "The input, the --key or --cert file, or a password file is missing."),
        _BUG,
        (73, "The output file cannot be created."),
        _DISK,
        _STORE_LOCKED,
        (
            77,
            "Wrong password, or no private key (given or in the store) for any recipient of "
            "the message.",
        ),
        _STORE_CONFIG,
    ],
    "inspect": [
        (0, "Shown."),
        _USAGE,
        (65, "The input is not an S/MIME message smimecli can read."),
        (66, "The input is missing or unreadable."),
        _BUG,
        _DISK,
    ],
    "sign": [
        (0, "Signed."),
        _USAGE,
        (
            65,
            "The input is not a usable message, --signer names no certificate, or the "
            "signer certificate cannot sign.",
        ),
        (66, "The input, the --signer-pfx file or a password file is missing."),
        _BUG,
        (73, "The output file cannot be created."),
        _DISK,
        _STORE_LOCKED,
        (77, "Wrong password, or the signer certificate has no private key."),
        _STORE_CONFIG,
    ],
    "verify": [
        (0, "The signature holds and the signer is trusted."),
        _USAGE,
        (65, "The message is not signed, or it is damaged or altered after signing."),
        (66, "The input or a --ca file is missing."),
        _BUG,
        (73, "The -o file cannot be created."),
        _DISK,
        _STORE_LOCKED,
        (77, "The signature holds, but the signer does not chain to a trusted root."),
        _STORE_CONFIG,
    ],
    "gen-root": [
        (0, "Created."),
        (64, "Bad options: subject, key size, dates or key usage names."),
        (66, "A password file is missing."),
        _BUG,
        (73, "An output file exists (use --force) or cannot be created."),
        _DISK,
        _STORE_LOCKED,
        _STORE_PASSPHRASE,
        _STORE_CONFIG,
    ],
    "gen-ca": [
        (0, "Created."),
        (64, "Bad options: subject, key size, dates, key usage names, or no --signer."),
        (65, "--signer names no certificate, or one that is not a CA able to sign."),
        (66, "A password file is missing."),
        _BUG,
        (73, "An output file exists (use --force) or cannot be created."),
        _DISK,
        _STORE_LOCKED,
        (77, "The --signer's private key is missing or cannot be opened."),
        _STORE_CONFIG,
    ],
    "issue-user": [
        (0, "Issued."),
        (64, "Bad options: address, subject, key size, dates, or no signer."),
        (65, "The --csr or --signer-pfx file is not usable, or the signer is not a CA."),
        (66, "The --csr, --signer-pfx or a password file is missing."),
        _BUG,
        (73, "An output file exists (use --force) or cannot be created."),
        _DISK,
        _STORE_LOCKED,
        (77, "Wrong password for --signer-pfx, or the signer's private key cannot be opened."),
        _STORE_CONFIG,
    ],
    "gen-crl": [
        (0, "The CRL is written."),
        (64, "Bad options, or a --revoke certificate that the CA did not issue."),
        (65, "--signer or --revoke names no certificate, or the signer is not a CA."),
        _BUG,
        (73, "The output file cannot be created."),
        _DISK,
        _STORE_LOCKED,
        (77, "The CA's private key is missing or cannot be opened."),
        _STORE_CONFIG,
    ],
    "serve": [
        (0, "Stopped by SIGTERM or SIGINT after the messages in flight were finished."),
        (64, "Bad options: --listen or --relay is not HOST:PORT, or a remote --listen."),
        (66, "The --rules file or the --spool folder is missing."),
        _BUG,
        (
            78,
            "The rules file is wrong (see smimecli-rules(5)), or the --listen address cannot "
            "be bound.",
        ),
    ],
    "demo": [
        (0, "The whole workflow ran and every step checked out."),
        _USAGE,
        _BUG,
        (73, "The --keep folder cannot be created or is not empty."),
        _DISK,
    ],
    "certs": _GROUP,
    "certs import": [
        (0, "Imported (certificates that had to be skipped are warnings unless --strict)."),
        _USAGE,
        (
            65,
            "A file is not a certificate, key or container smimecli reads; with --strict, a "
            "certificate was skipped.",
        ),
        (66, "A file or a password file is missing."),
        _BUG,
        _DISK,
        _STORE_LOCKED,
        (77, "Wrong .pfx password, or the store passphrase is missing or wrong."),
        _STORE_CONFIG,
    ],
    "certs export": [
        (0, "Exported."),
        (64, "Bad options, or a selector that names several certificates where one is needed."),
        (65, "A selector names no certificate in the store."),
        _BUG,
        (73, "The -o file exists (use --force) or cannot be created."),
        _DISK,
        _STORE_LOCKED,
        (77, "The private key cannot be opened: the store passphrase is missing or wrong."),
        _STORE_CONFIG,
    ],
    "certs list": [
        (0, "Listed (with --expiring: no certificate expires within the period)."),
        (1, "With --expiring: a certificate is listed, expired or expiring soon."),
        _USAGE,
        _BUG,
        _DISK,
        _STORE_LOCKED,
        _STORE_CONFIG,
    ],
    "certs show": [
        (0, "Shown."),
        (64, "The selector names several certificates (they are listed)."),
        (65, "The selector names no certificate in the store."),
        _BUG,
        _DISK,
        _STORE_LOCKED,
        _STORE_CONFIG,
    ],
    "certs verify": [
        (0, "Trusted, within its validity, not revoked and usable for --purpose."),
        (64, "The selector names several certificates (they are listed)."),
        (65, "The file is not a certificate, or the selector names none in the store."),
        (66, "The file is missing."),
        _BUG,
        _DISK,
        _STORE_LOCKED,
        (77, "Not trusted, not valid now, revoked or not usable for --purpose (reasons printed)."),
        _STORE_CONFIG,
    ],
    "certs remove": [
        (0, "Removed."),
        _USAGE,
        (65, "A selector names no certificate in the store."),
        _BUG,
        _DISK,
        _STORE_LOCKED,
        _STORE_CONFIG,
    ],
    "rules": _GROUP,
    "rules check": [
        (0, "The rules file is valid and every certificate source opens."),
        _USAGE,
        (66, "The rules file is missing or unreadable."),
        _BUG,
        _DISK,
        _STORE_LOCKED,
        (78, "The rules file is wrong or a source cannot be read: every problem is listed."),
    ],
    "rules test": [
        (0, "Every tested recipient would be encrypted."),
        (64, "No rule name and no --all."),
        (66, "The rules file is missing or unreadable."),
        (67, "Some tested recipient would go unencrypted or be rejected."),
        _BUG,
        _DISK,
        _STORE_LOCKED,
        (
            78,
            "The rules file is wrong, names no such rule, or a source cannot be read "
            "(see smimecli-rules(5)).",
        ),
    ],
    "tnef": _GROUP,
    "tnef convert": [
        (0, "Converted (a message without winmail.dat parts is written unchanged)."),
        _USAGE,
        (65, "The input is not a message, or a winmail.dat part is damaged."),
        (66, "The input is missing or unreadable."),
        _BUG,
        (73, "The output file cannot be created."),
        _DISK,
    ],
}

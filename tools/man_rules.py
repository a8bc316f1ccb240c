"""The source of smimecli-rules(5), the rules file format, as a roff-ready structure.

``SECTIONS`` is a list of (heading, blocks); a block is ``("p", text)`` a paragraph,
``("tp", term, text)`` a tagged paragraph (the term in bold), or ``("ex", text)`` a verbatim
example. ``tools.gen_docs`` renders it (escaping every text for roff) to man/smimecli-rules.5,
and tests/test_docs.py checks that the page names every key smimecli/rules/load.py accepts.
"""

from __future__ import annotations

NAME = "smimecli-rules"
SECTION = "5"
SUMMARY = "rules file of smimecli: which recipients get encrypted, to which certificates"

EXAMPLE = """\
# /etc/smimecli/rules.toml
[defaults]
cipher = "aes256"
on_missing_cert = "pass"

# One partner: every address of the domain, certificates from the store.
[[rule]]
name = "partners"
recipients = ["*@partner.example", "*@xn--bcher-kva.example"]
source = { kind = "store", store = "other" }
key_transport = "rsa-oaep"

# The board: never in clear text. No certificate means the message is refused.
[[rule]]
name = "board"
recipients = ["ceo@example.com", "cfo@example.com"]
source = { kind = "dir", path = "board-certs" }
on_missing_cert = "reject"
require_trusted = true

# A shared mailbox read with one certificate, whatever address it names.
[[rule]]
name = "legal"
recipients = ["legal@example.com"]
match = "any"
source = { kind = "pfx", path = "legal.pfx", password_env = "LEGAL_PFX_PASSWORD" }
"""

Block = tuple[str, ...]

SECTIONS: list[tuple[str, list[Block]]] = [
    (
        "DESCRIPTION",
        [
            (
                "p",
                "A rules file tells smimecli encrypt --rules and smimecli serve which "
                "recipients of a message get it encrypted, where their certificates come "
                "from and how to encrypt to them. It is a TOML file with an optional "
                "[defaults] table and one or more [[rule]] tables. Validation is strict: an "
                "unknown key, a wrong type or an unknown value is an error, never ignored.",
            ),
            (
                "p",
                "Check a file with smimecli rules check --rules FILE, and try it on a "
                "virtual message with smimecli rules test --rules FILE --all; neither sends "
                "anything. Relative paths in the file are read from the rules file's folder.",
            ),
        ],
    ),
    (
        "[defaults]",
        [
            (
                "p",
                "Optional. Sets the encryption settings (the keys match, cipher, "
                "key_transport, oaep_hash, convert_tnef, on_missing_cert and "
                "require_trusted, described under [[rule]]) for every rule that does not set "
                "them itself. A key neither the rule nor [defaults] sets has the default "
                "given below. name, recipients and source are not allowed here.",
            ),
        ],
    ),
    (
        "[[rule]]",
        [
            ("p", "Each [[rule]] table is one rule; name, recipients and source are required."),
            ("tp", 'name = "TEXT"', "The rule's name, unique in the file; messages use it."),
            (
                "tp",
                'recipients = ["PATTERN", ...]',
                "A non-empty list of address patterns (see PATTERNS), one per string, "
                "without spaces or commas.",
            ),
            (
                "tp",
                "source = { kind = ..., ... }",
                "Where the recipients' certificates come from (see SOURCES).",
            ),
            (
                "tp",
                'match = "email" | "any"',
                "email (the default): use a certificate that names the recipient's address "
                "(subjectAltName rfc822Name or the subject's emailAddress, case-insensitive). "
                "any: use the source's certificate whatever address it names, for a shared "
                "mailbox or a gateway certificate; only with exact addresses (no wildcard), "
                "and a source holding several certificates then needs a thumbprint.",
            ),
            (
                "tp",
                'cipher = "NAME"',
                "The content cipher: aes128, aes192, aes256 (the default), 3des, rc2-128, "
                "rc2-64, rc2-40, aes128-gcm or aes256-gcm (AES-GCM: AuthEnvelopedData, RFC "
                "5083). 3des and rc2-* are weak and warn; use them only for old readers. "
                "auto picks the strongest cipher every encrypted recipient announced (the "
                "SMIMECapabilities harvested from its signed mail, or its certificate's): "
                "AES-GCM only when all of them announced it, otherwise aes256.",
            ),
            (
                "tp",
                'key_transport = "rsa" | "rsa-oaep"',
                "How the content key is encrypted to an RSA certificate: rsa (PKCS#1 v1.5, "
                "the default, read everywhere) or rsa-oaep (RSAES-OAEP, RFC 8017).",
            ),
            (
                "tp",
                'oaep_hash = "sha1" | "sha256" | "sha384" | "sha512"',
                "The hash of RSA-OAEP (and its MGF1), used with key_transport = "
                '"rsa-oaep"; default sha256. sha1 warns.',
            ),
            (
                "tp",
                "convert_tnef = true | false",
                "Turn Outlook winmail.dat (TNEF) parts into plain MIME before encrypting; "
                "default true.",
            ),
            (
                "tp",
                'on_missing_cert = "pass" | "reject" | "tempfail"',
                "What happens when a recipient of this rule has no usable certificate: pass "
                "(the default) lets the message go to that recipient unencrypted; reject "
                "refuses the message (exit status 67); tempfail defers it (exit status 75, "
                "the MTA retries later). smimecli serve answers that recipient 550 5.7.1 or "
                "450 4.7.1 instead. smimecli encrypt --on-missing-cert overrides it for "
                "every rule.",
            ),
            (
                "tp",
                "require_trusted = true | false",
                "Only use certificates that chain to a root certificate in the store's root "
                "store (through its ca store); default false.",
            ),
            (
                "tp",
                'sign = { signer = "SELECTOR" }',
                "Sign the message with this certificate of the store's my store (thumbprint, "
                "email or CN; it needs its private key), then encrypt it. When nobody gets "
                "the message encrypted and the policy lets it pass, it goes out signed only.",
            ),
        ],
    ),
    (
        "[[SIGNER]]",
        [
            (
                "p",
                "Optional, repeatable: sign by sender. A message whose From: address matches "
                'one of senders = ["PATTERN", ...] (the same patterns as recipients) is signed '
                'with signer = "SELECTOR" when no matching rule has a sign key; the first '
                "matching [[signer]] table wins.",
            ),
        ],
    ),
    (
        "SOURCES",
        [
            (
                "p",
                "source is an inline table whose kind says where the certificates are. A "
                "key the kind does not use is an error.",
            ),
            (
                "tp",
                'kind = "store"',
                'The certificate store (see smimecli(1), --store). store = "other" (the '
                'default: recipients), "my", "root" or "ca" chooses the store.',
            ),
            (
                "tp",
                'kind = "pfx"',
                'A PKCS#12 file: path = "FILE". Its password comes from password_env = '
                '"NAME" (an environment variable) or password_file = "FILE" (one trailing '
                "newline is ignored), never from the rules file itself; not both.",
            ),
            ("tp", 'kind = "sst"', 'A Windows serialized certificate store: path = "FILE".'),
            (
                "tp",
                'kind = "cer"',
                "A file holding exactly one certificate (.cer, .crt, .pem; DER or PEM): "
                'path = "FILE".',
            ),
            (
                "tp",
                'kind = "dir"',
                'Every certificate file in a folder: path = "DIR". Hidden files are skipped; '
                "a file that cannot be read is a warning and is skipped.",
            ),
            (
                "tp",
                'thumbprint = "HEX"',
                "Any kind: only the certificate whose SHA-1 thumbprint starts with these 8 "
                "to 40 hex digits (spaces and colons ignored, as Windows shows them).",
            ),
            (
                "p",
                "A certificate is usable for a recipient when it is within its validity, has "
                "an RSA or EC key, allows key encipherment (RSA) or key agreement (EC) when "
                "it has a key usage extension, allows emailProtection when it has an "
                'extended key usage extension, names the recipient (match = "email") and, '
                "with require_trusted, chains to a trusted root. Among the usable "
                "certificates, the one valid the longest is used.",
            ),
        ],
    ),
    (
        "PATTERNS",
        [
            (
                "p",
                "A pattern matches the whole address, ignoring case. * matches any run of "
                "characters (none too), ? exactly one character; every other character is "
                "literal, [ and + included. *@example.com matches every address of that "
                "domain (not of its subdomains: write *@*.example.com for those); "
                "john.doe@example.com matches only that address.",
            ),
            (
                "p",
                "Addresses and patterns are compared the way the mail server delivers: the "
                "angle brackets and surrounding spaces go, the domain loses a trailing dot, "
                "is lower-cased, and its internationalised labels are compared as their "
                "ASCII form (IDN, xn--), so *@bücher.example and *@xn--bcher-kva.example "
                "are the same pattern. The local part is kept as written; its case is "
                "ignored.",
            ),
        ],
    ),
    (
        "ORDER AND OUTCOME",
        [
            (
                "p",
                "Each recipient (the envelope recipients the MTA gives, else the To, Cc and "
                "Bcc header fields) is decided by the first rule in file order that has a "
                "matching pattern; later rules are not consulted for it, and rules check "
                "warns about a pattern an earlier rule already covers. A recipient no rule "
                "matches is left alone (a warning says so).",
            ),
            (
                "p",
                "For one message: every recipient with a usable certificate becomes a "
                "recipient of one encrypted message. The content cipher is that of the "
                "first rule in file order that found a certificate (another rule asking for "
                "another cipher warns); each recipient keeps its own rule's key_transport "
                "and oaep_hash. winmail.dat parts are converted when any of those rules "
                "asks for it.",
            ),
            (
                "p",
                "A recipient without a usable certificate follows its rule's "
                "on_missing_cert before anything is written: when one recipient says reject "
                "the message is refused (67), else when one says tempfail it is deferred "
                "(75). When no recipient has a certificate, the output is the input, byte "
                "for byte. A message that is already encrypted always passes unchanged.",
            ),
        ],
    ),
    (
        "ERRORS",
        [
            (
                "p",
                "Any problem in the rules file is a configuration error: exit status 78 "
                "(EX_CONFIG), one line per problem on standard error naming the file, the "
                "line when known, the rule and the key, for example: rules.toml:7: rule "
                "'partners', key 'cipher': unknown cipher 'aes512' (choose aes128 | ...). "
                "rules check lists every problem at once.",
            ),
            (
                "p",
                "Errors are: TOML syntax; a top-level key other than defaults and rule; no "
                "[[rule]]; an unknown key; a missing name, recipients or source; a "
                "duplicate name; a wrong type (a string where a list is needed, a string "
                'where true or false is needed); an unknown value; match = "any" with a '
                "wildcard pattern, or with a source of several certificates and no "
                "thumbprint; a path that does not exist or a source that cannot be read (a "
                "wrong .pfx password included). A locked store is not a configuration "
                "error: it gives 75 so that the mail is retried.",
            ),
        ],
    ),
    ("EXAMPLE", [("ex", EXAMPLE)]),
    (
        "FILES",
        [
            (
                "tp",
                "/etc/smimecli/rules.toml",
                "A usual place for the rules of a mail server; the path is always given "
                "with --rules.",
            ),
        ],
    ),
]

SEE_ALSO = [
    ("smimecli", "1"),
    ("smimecli-encrypt", "1"),
    ("smimecli-serve", "1"),
    ("smimecli-rules-check", "1"),
    ("smimecli-rules-test", "1"),
    ("smimecli-certs-import", "1"),
]

"""The demo workflow: a lab root, a user, a rules file, encrypt, decrypt, inspect.

Everything happens in one folder (a throwaway one unless the caller keeps it), with its own
certificate store, so the demo never touches the user's store. The CLI prints the lines
handed to ``say``; the library never prints.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from smimecli.errors import SmimeError

DEMO_SENDER = "test@localhost"
DEMO_RECIPIENT = "test@example.net"
DEMO_USER_SUBJECT = f"E={DEMO_RECIPIENT},CN=SMIME Tester 2048"

RULES = """\
# Written by `smimecli demo`: encrypt everything for example.net with certificates
# from the store's Personal folder (where issue-user put the test user).
[defaults]
cipher = "aes256"
on_missing_cert = "reject"

[[rule]]
name = "lab-users"
recipients = ["*@example.net"]
source = { kind = "store", store = "my" }
match = "email"
"""

MESSAGE = (
    f"From: SMIME Demo <{DEMO_SENDER}>\n"
    f"To: SMIME Tester <{DEMO_RECIPIENT}>\n"
    "Subject: smimecli demo\n"
    "MIME-Version: 1.0\n"
    'Content-Type: text/plain; charset="utf-8"\n'
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Hello from smimecli.\n"
    "This text was encrypted by rules and decrypted again.\n"
).encode()


@dataclass
class DemoResult:
    """What the demo did; ``ok`` is True when the round trip gave back the message."""

    folder: Path
    root_thumbprint: str = ""
    user_thumbprint: str = ""
    encrypted_to: list[str] = field(default_factory=list)
    ok: bool = False


def _body(message: bytes) -> bytes:
    """The body of a message with its line endings made LF (for the round-trip check)."""
    text = message.replace(b"\r\n", b"\n")
    return text.split(b"\n\n", 1)[1]


def run_demo(
    folder: Path,
    say: Callable[[str], None],
    *,
    command: Callable[[str], None] | None = None,
    kept: bool = False,
) -> DemoResult:
    """Run the whole workflow in ``folder`` and report each step through ``say``.

    ``command`` receives, before each step, the ``smimecli`` command line that does the
    same by hand (``kept``: the folder stays, so the store is not called throwaway).

    Raises:
        SmimeError: a step failed (the message names it).
    """
    import shlex

    result = DemoResult(folder)
    store_dir = folder / "store"

    def run(*args: str | Path) -> None:
        if command is not None:
            words = ["smimecli", "--store", str(store_dir), *map(str, args)]
            command(" ".join(shlex.quote(word) for word in words))

    say(f"1. A {'' if kept else 'throwaway '}certificate store in {store_dir}")
    _make_identities(store_dir, result, say, run)

    rules = folder / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    plain = folder / "message.eml"
    plain.write_bytes(MESSAGE)
    say(f"4. rules file: {rules} (*@example.net -> store 'my', match by email)")

    encrypted = _encrypt(folder, rules, store_dir, result, say, run)
    _decrypt(folder, encrypted, store_dir, result, say, run)
    _inspect(folder, encrypted, store_dir, say, run)
    return result


def _make_identities(
    store_dir: Path, result: DemoResult, say: Callable[[str], None], run: Callable[..., None]
) -> None:
    """Steps 2 and 3: a lab root and a user issued by it, both into the store."""
    from smimecli import lab
    from smimecli.certs.store import Store

    run("gen-root")
    root = lab.make_root(lab.RootSpec())
    with Store.open(store_dir, create=True) as store:
        store.add(root.cert, key=root.key, store_name="my")
        store.add(root.cert, store_name="root")
        result.root_thumbprint = root.thumbprint
        say(f"2. gen-root:   {root.subject}  {root.thumbprint}  (stores my, root)")
        run(
            "issue-user",
            "--signer",
            root.thumbprint,
            "--email",
            DEMO_RECIPIENT,
            "--subject",
            DEMO_USER_SUBJECT,
        )
        user = lab.issue_user(
            lab.UserSpec(email=DEMO_RECIPIENT, subject=DEMO_USER_SUBJECT),
            lab.Signer.checked(root.cert, root.key),
        )
        store.add(user.cert, key=user.key, store_name="my")
        result.user_thumbprint = user.thumbprint
        say(f"3. issue-user: {user.subject}  {user.thumbprint}  (store my, with key)")


def _encrypt(
    folder: Path,
    rules: Path,
    store_dir: Path,
    result: DemoResult,
    say: Callable[[str], None],
    run: Callable[..., None],
) -> bytes:
    """Step 5: encrypt the message by the rules; returns the encrypted message."""
    from smimecli.encrypt.request import EncryptRequest, encrypt_one

    run(
        "encrypt",
        "--rules",
        rules,
        "--recipient",
        DEMO_RECIPIENT,
        "-o",
        folder / "message.p7m.eml",
        folder / "message.eml",
    )
    encrypted = io.BytesIO()
    request = EncryptRequest(
        rules=rules, store_dir=store_dir, envelope_recipients=(DEMO_RECIPIENT,)
    )
    outcome = encrypt_one(request, io.BytesIO(MESSAGE), encrypted)
    if outcome.action != "encrypted":
        raise SmimeError(f"demo: the message was not encrypted ({outcome.action})")
    assert outcome.plan is not None
    result.encrypted_to = [r.address for r in outcome.plan.encrypted]
    (folder / "message.p7m.eml").write_bytes(encrypted.getvalue())
    cipher = outcome.cipher or "?"
    say(f"5. encrypt --rules: ENCRYPTED for {', '.join(result.encrypted_to)} ({cipher})")
    return encrypted.getvalue()


def _decrypt(
    folder: Path,
    encrypted: bytes,
    store_dir: Path,
    result: DemoResult,
    say: Callable[[str], None],
    run: Callable[..., None],
) -> None:
    """Step 6: decrypt with the key found in the store and compare the text."""
    from smimecli.decrypt.keys import store_key_lookup
    from smimecli.decrypt.message import decrypt_message

    run("decrypt", "-o", folder / "message.decrypted.eml", folder / "message.p7m.eml")
    decrypted = io.BytesIO()
    decrypt_message(io.BytesIO(encrypted), decrypted, key_lookup=store_key_lookup(store_dir))
    (folder / "message.decrypted.eml").write_bytes(decrypted.getvalue())
    result.ok = _body(decrypted.getvalue()) == _body(MESSAGE)
    say(
        "6. decrypt (key found in the store): "
        + ("round trip OK, the text is back" if result.ok else "round trip FAILED")
    )


def _inspect(
    folder: Path,
    encrypted: bytes,
    store_dir: Path,
    say: Callable[[str], None],
    run: Callable[..., None],
) -> None:
    """Step 7: what the encrypted message says of its cipher and recipients."""
    from smimecli.certs.store import Store
    from smimecli.decrypt.inspect import inspect_message
    from smimecli.decrypt.keys import store_finder

    run("inspect", folder / "message.p7m.eml")
    with Store.open(store_dir, create=True) as store:
        report = inspect_message(io.BytesIO(encrypted), store_finder=store_finder(store))
    cipher_info = report.cipher or {}
    say(f"7. inspect: {report.content_type}, content cipher {cipher_info.get('name', '?')}")
    for recipient in report.recipients:
        ident = recipient["id"]
        named = (
            f"issuer {ident['issuer']}, serial {ident['serial']}"
            if "issuer" in ident
            else f"key id {ident.get('key_id', '')}"
        )
        matches = ", ".join(str(m.get("subject", "")) for m in recipient["store"])
        say(
            f"   recipient ({recipient['kind']}, {recipient['key_encryption']}): {named}"
            f" -> {matches or 'no store match'}"
        )

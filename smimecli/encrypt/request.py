"""One encrypt request, and the one function that carries it out.

The single-message command, every batch worker and the SMTP daemon describe how a message
is to be encrypted with an :class:`EncryptRequest` and hand it to :func:`encrypt_one`:
direct recipients or a rule set, the cipher, the TNEF choice, the policy override and an
optional signer (sign, then encrypt). The answer is an :class:`Outcome`: what was done,
for whom, and the notices (:class:`smimecli.notices.Notice`) a person should hear about.
Nothing here prints or logs.

The daemon plans once per message and writes several copies; it calls the rules-mode
steps directly: :func:`smimecli.rules.plan.plan_recipients`, then :func:`encrypt_planned`.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from smimecli.choices import DEFAULT_CIPHER
from smimecli.notices import Notice, merge_notices

if TYPE_CHECKING:
    from smimecli.cms.envelope import RecipientSummary
    from smimecli.cms.recipients import Recipient
    from smimecli.encrypt.message import EncryptOutcome
    from smimecli.mime import HeaderBlock, LineReader
    from smimecli.rules.decision import Plan
    from smimecli.rules.model import RuleSet
    from smimecli.sign.signers import Signer

__all__ = ["EncryptRequest", "Outcome", "encrypt_one", "encrypt_planned", "plan_signer"]

ALREADY_ENCRYPTED = "already encrypted: passed unchanged"
# The plan words these itself (per address, in its own terms); the CMS layer's notices of
# the same codes are repeats.
_PLAN_SAYS = frozenset({"weak-cipher", "oaep-sha1"})


@dataclass(frozen=True)
class EncryptRequest:
    """Everything that decides how one message is encrypted.

    Attributes:
        recipients: direct mode: :class:`smimecli.cms.recipients.Recipient` objects.
        rules: rules mode: a loaded :class:`smimecli.rules.model.RuleSet` (its sources
            open on first use), or the rules file, read only after the message proved
            not to be encrypted already.
        store_dir: the certificate store folder (a rules file's ``store`` sources, roots).
        envelope_recipients: rules mode: the SMTP envelope recipients; None reads the
            To, Cc and Bcc headers.
        cipher: direct mode content cipher (rules mode: the rules decide).
        convert_tnef: direct mode TNEF conversion (rules mode: per rule).
        on_missing_cert: rules mode: pass | reject | tempfail for every rule.
        signer: direct mode: a :class:`smimecli.sign.signers.Signer` to sign with first.
        store_passphrase: rules mode, a rules file: decrypts the store's private keys (the
            rules' signers); None reads ``$SMIMECLI_STORE_PASSWORD``.
    """

    recipients: tuple[Recipient, ...] = ()
    rules: RuleSet | Path | None = None
    store_dir: Path | None = None
    envelope_recipients: tuple[str, ...] | None = None
    cipher: str = DEFAULT_CIPHER
    convert_tnef: bool = True
    on_missing_cert: str | None = None
    signer: Signer | None = None
    store_passphrase: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Outcome:
    """What :func:`encrypt_one` did with one message.

    Attributes:
        action: ``encrypted``, ``passed`` (rules mode: nobody had a certificate; the input
            unchanged), ``already-encrypted`` (copied unchanged) or ``signed`` (rules
            mode: signed only, nobody to encrypt to).
        cipher: the content cipher, when encrypted.
        content_type: ``enveloped-data`` or ``authEnveloped-data``, when encrypted.
        recipients: who can open the envelope, and how their key was protected.
        plan: rules mode: the per-recipient decisions (rule, certificate, reason).
        notices: what a person should hear about, each once.
        tnef_converted: winmail.dat parts replaced by plain MIME.
        signed_by: the signer's thumbprint and subject, when one was given or chosen.
    """

    action: str
    cipher: str | None = None
    content_type: str | None = None
    recipients: tuple[RecipientSummary, ...] = ()
    plan: Plan | None = None
    notices: tuple[Notice, ...] = ()
    tnef_converted: int = 0
    signed_by: Mapping[str, Any] | None = None

    @property
    def encrypted(self) -> bool:
        """True when the output is a new enveloped message."""
        return self.action == "encrypted"

    @property
    def warnings(self) -> list[str]:
        """The notices' texts."""
        return [n.text for n in self.notices]

    def to_json(self) -> dict[str, Any]:
        """The report ``encrypt --json`` prints (``warnings`` as text, and ``notices``)."""
        if self.plan is not None:
            document = self.plan.to_json()
            document["action"] = self.action
            document["content_type"] = self.content_type
            document["tnef_converted"] = self.tnef_converted
            document["signed_by"] = None if self.signed_by is None else dict(self.signed_by)
        else:
            from smimecli.encrypt.message import envelope_json

            document = envelope_json(self)
            if self.signed_by is not None:
                document["signed_by"] = dict(self.signed_by)
        document["warnings"] = self.warnings
        document["notices"] = [n.to_json() for n in self.notices]
        return document


def _of(result: EncryptOutcome, signed_by: Mapping[str, Any] | None = None) -> Outcome:
    return Outcome(
        action=result.action,
        cipher=result.cipher,
        content_type=result.content_type,
        recipients=tuple(result.recipients),
        notices=merge_notices(result.notices),
        tnef_converted=result.tnef_converted,
        signed_by=signed_by,
    )


def encrypt_one(request: EncryptRequest, src: BinaryIO, dst: BinaryIO) -> Outcome:
    """Encrypt one message as ``request`` says.

    Raises:
        SmimeError: as :func:`smimecli.encrypt.message.encrypt_message`,
            :func:`smimecli.sign.signers.sign_then_encrypt`, or in rules mode a bad rule
            source (78), a refused policy (67, 75; nothing is written). A message that
            is already encrypted passes before the rules are consulted.
    """
    if request.rules is not None:
        return _by_rules(request, src, dst)
    if request.signer is not None:
        from smimecli.sign.signers import describe, sign_then_encrypt

        signed = sign_then_encrypt(
            src,
            dst,
            list(request.recipients),
            signer=request.signer,
            cipher=request.cipher,
            convert_tnef=request.convert_tnef,
        )
        return _of(signed, signed_by=describe(request.signer))
    from smimecli.encrypt.message import encrypt_message

    result = encrypt_message(
        src,
        dst,
        list(request.recipients),
        cipher=request.cipher,
        convert_tnef=request.convert_tnef,
    )
    return _of(result)


def _by_rules(request: EncryptRequest, src: BinaryIO, dst: BinaryIO) -> Outcome:
    from smimecli import mime
    from smimecli.rules.message import header_recipients
    from smimecli.rules.plan import plan_recipients

    headers, rest = mime.read_header_block(src)
    envelope = request.envelope_recipients
    addresses = header_recipients(headers) if envelope is None else list(envelope)
    # Before the rules are consulted: an encrypted message leaks nothing, and a broken
    # rules file or source must not hold it back. "Encrypted" means a CMS EnvelopedData
    # body, not a Content-Type that claims it.
    encrypted, rest = mime.sniff_encrypted(headers, rest)
    if encrypted:
        dst.write(headers.raw)
        shutil.copyfileobj(rest, dst, 1 << 20)
        return _already_encrypted(addresses)
    rules = _rule_set(request)
    plan = plan_recipients(rules, addresses, on_missing_cert=request.on_missing_cert)
    plan.raise_for_policy()
    return encrypt_planned(plan, headers, rest, dst, signer=plan_signer(rules, plan, headers))


def _already_encrypted(addresses: Sequence[str]) -> Outcome:
    from smimecli.rules.decision import Outcome as Decision
    from smimecli.rules.decision import Plan, RecipientPlan
    from smimecli.rules.plan import unique_addresses

    plan = Plan(
        [
            RecipientPlan(given, None, Decision.PASSED, "already encrypted")
            for given, _ in unique_addresses(addresses)
        ]
    )
    notice = Notice("already-encrypted", ALREADY_ENCRYPTED)
    return Outcome("already-encrypted", plan=plan, notices=(notice,))


def _rule_set(request: EncryptRequest) -> RuleSet:
    if not isinstance(request.rules, Path | str):
        assert request.rules is not None
        return request.rules
    from smimecli.rules.load import load_rules

    return load_rules(
        Path(request.rules),
        store_dir=request.store_dir,
        store_passphrase=request.store_passphrase,
    )


def plan_signer(
    rules: RuleSet, plan: Plan, headers: HeaderBlock, *, sender: str | None = None
) -> Signer | None:
    """The signer the rules choose for this message (see
    :func:`smimecli.rules.message.choose_signer`), loaded from the store (once per rule set);
    None: unsigned.

    ``sender`` (the SMTP envelope sender) is matched against the ``[[signer]]`` tables'
    ``senders`` instead of the From: addresses; None or empty (the null sender of a
    bounce) reads From:.
    """
    from smimecli.rules.message import choose_signer

    if sender:
        headers = _sender_headers(sender)
    signing = choose_signer(rules, plan, headers)
    return None if signing is None else rules.load_signer(*signing)


def _sender_headers(sender: str) -> HeaderBlock:
    """A header block whose only From: address is ``sender``."""
    import io

    from smimecli import mime

    raw = f"From: <{sender}>\r\n\r\n".encode("utf-8", "surrogateescape")
    return mime.read_header_block(io.BytesIO(raw))[0]


def encrypt_planned(
    plan: Plan,
    headers: HeaderBlock,
    rest: LineReader,
    dst: BinaryIO,
    *,
    signer: Signer | None = None,
) -> Outcome:
    """Carry out a plan that no policy refused: encrypt to its recipients with a
    certificate (signed first by ``signer``), else sign only, else copy the input.

    Args:
        plan: from :func:`smimecli.rules.plan.plan_recipients`, after ``raise_for_policy``.
        headers, rest: the message, as :func:`smimecli.mime.read_header_block` read it.
        dst: where the result goes.
        signer: from :func:`plan_signer`, or None.
    """
    notices = plan.all_notices()
    signed_by = None
    if signer is not None:
        from smimecli.sign.signers import describe

        signed_by = describe(signer)
    if not plan.encrypted:
        if signer is None:  # nobody has a certificate: the input, byte for byte
            dst.write(headers.raw)
            shutil.copyfileobj(rest, dst, 1 << 20)
            return Outcome("passed", plan=plan, notices=merge_notices(notices))
        from smimecli.sign.message import SignOptions, sign_message

        options = SignOptions(chain=signer.chain)
        sign_message(
            headers.raw + rest.read(), dst, cert=signer.cert, key=signer.key, options=options
        )
        return Outcome("signed", plan=plan, notices=merge_notices(notices), signed_by=signed_by)
    result = _encrypt_for_plan(plan, headers, rest, dst, signer)
    said = {n.code for n in notices} & _PLAN_SAYS
    return Outcome(
        action="encrypted",
        cipher=result.cipher,
        content_type=result.content_type,
        recipients=tuple(result.recipients),
        plan=plan,
        notices=merge_notices(notices, [n for n in result.notices if n.code not in said]),
        tnef_converted=result.tnef_converted,
        signed_by=signed_by,
    )


def _encrypt_for_plan(
    plan: Plan, headers: HeaderBlock, rest: LineReader, dst: BinaryIO, signer: Signer | None
) -> EncryptOutcome:
    assert plan.cipher is not None
    if signer is not None:
        from smimecli.sign.signers import sign_then_encrypt

        return sign_then_encrypt(
            headers.raw + rest.read(),
            dst,
            plan.envelope_recipients(),
            signer=signer,
            cipher=plan.cipher,
            convert_tnef=plan.convert_tnef,
        )
    from smimecli.encrypt.message import encrypt_parsed

    return encrypt_parsed(
        headers,
        rest,
        dst,
        plan.envelope_recipients(),
        cipher=plan.cipher,
        convert_tnef=plan.convert_tnef,
    )

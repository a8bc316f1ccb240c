"""One encrypt request, and the one function that carries it out.

The single-message command, every batch worker and (next) the SMTP daemon describe how a
message is to be encrypted with an :class:`EncryptRequest` and hand it to
:func:`encrypt_one`: direct recipients or a rules file, the cipher, the TNEF choice, the
policy override and an optional signer (sign, then encrypt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from smimecli.choices import DEFAULT_CIPHER

__all__ = ["EncryptRequest", "encrypt_one"]


@dataclass(frozen=True)
class EncryptRequest:
    """Everything that decides how one message is encrypted.

    Attributes:
        recipients: direct mode: :class:`smimecli.cms.recipients.Recipient` objects.
        rules: rules mode: the rules file (loaded once per process and file version, and
            only after the message proved not to be encrypted already).
        store_dir: the certificate store folder (rules mode ``store`` sources, roots).
        envelope_recipients: rules mode: the SMTP envelope recipients; None reads the
            To, Cc and Bcc headers.
        cipher: direct mode content cipher (rules mode: the rules decide).
        convert_tnef: direct mode TNEF conversion (rules mode: per rule).
        on_missing_cert: rules mode: pass | reject | tempfail for every rule.
        signer: direct mode: a :class:`smimecli.sign.signers.Signer` to sign with first.
    """

    recipients: tuple[Any, ...] = ()
    rules: Path | None = None
    store_dir: Path | None = None
    envelope_recipients: tuple[str, ...] | None = None
    cipher: str = DEFAULT_CIPHER
    convert_tnef: bool = True
    on_missing_cert: str | None = None
    signer: Any = None


def encrypt_one(request: EncryptRequest, src: BinaryIO, dst: BinaryIO) -> dict[str, Any]:
    """Encrypt one message as ``request`` says; returns its report (what ``--json`` shows).

    Raises:
        SmimeError: as :func:`smimecli.encrypt.message.encrypt_message`,
            :func:`smimecli.sign.signers.sign_then_encrypt` or
            :func:`smimecli.rules.plan.encrypt_with_rules` (a refused policy writes nothing).
    """
    if request.rules is not None:
        from smimecli.rules.plan import encrypt_with_rules

        envelope = request.envelope_recipients
        outcome: Any = encrypt_with_rules(
            src,
            dst,
            request.rules,
            list(envelope) if envelope is not None else None,
            request.store_dir,
            on_missing_cert=request.on_missing_cert,
        )
        return dict(outcome.to_json())
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
        return {**signed.to_json(), "signed_by": describe(request.signer)}
    from smimecli.encrypt.message import encrypt_message

    result = encrypt_message(
        src,
        dst,
        list(request.recipients),
        cipher=request.cipher,
        convert_tnef=request.convert_tnef,
    )
    return result.to_json()

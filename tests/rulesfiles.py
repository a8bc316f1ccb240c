"""Rules files the tests share.

``rules_file`` writes one. ``policy_rules`` writes the usual pair: a rule that encrypts to
alice@example.com with her certificate file, then a rule for addresses that have no
certificate (a 'dir' source of an empty folder) with a given ``on_missing_cert``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["policy_rule_text", "policy_rules", "rules_file"]


def rules_file(folder: Path, body: str, name: str = "rules.toml") -> Path:
    """Write ``body`` as the rules file ``folder/name``; its path."""
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path


def policy_rule_text(
    cert: Path,
    policy: str,
    *,
    known: str = "alice",
    unknown: str = "nobody",
    pattern: str = "nobody@example.com",
    match_any: bool = False,
) -> str:
    """Rule ``known`` encrypts to alice@example.com with the certificate file ``cert``
    (``match = "any"`` when ``match_any``); rule ``unknown`` covers ``pattern`` with the
    empty folder ``empty`` beside the rules file and ``on_missing_cert = policy``."""
    match = 'match = "any"\n' if match_any else ""
    return f"""
[[rule]]
name = "{known}"
recipients = ["alice@example.com"]
source = {{ kind = "cer", path = "{cert}" }}
{match}
[[rule]]
name = "{unknown}"
recipients = ["{pattern}"]
source = {{ kind = "dir", path = "empty" }}
on_missing_cert = "{policy}"
"""


def policy_rules(
    folder: Path,
    cert: Path,
    policy: str,
    *,
    name: str = "rules.toml",
    known: str = "alice",
    unknown: str = "nobody",
    pattern: str = "nobody@example.com",
    match_any: bool = False,
) -> Path:
    """The rules of :func:`policy_rule_text` written to ``folder/name``, with the empty
    certificate folder ``folder/empty`` made; the rules file's path."""
    (folder / "empty").mkdir(exist_ok=True)
    text = policy_rule_text(
        cert, policy, known=known, unknown=unknown, pattern=pattern, match_any=match_any
    )
    return rules_file(folder, text, name)

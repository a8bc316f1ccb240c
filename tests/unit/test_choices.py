"""smimecli.choices: one list of names for the CLI, the rules file, Recipient and the CMS tables."""

from __future__ import annotations

import ast
import subprocess
import sys
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

import pytest
import typer

import smimecli.choices
from smimecli.certs import store
from smimecli.choices import (
    DEFAULT_CIPHER,
    Cipher,
    KeyTransport,
    MatchMode,
    MissingCertPolicy,
    OaepHash,
    RecipientId,
    SourceKind,
    StoreName,
    names,
)
from smimecli.cli.app import build_app
from smimecli.cms import algorithms, recipients
from smimecli.errors import ConfigError, UsageError
from smimecli.rules import model as rules
from smimecli.rules.load import load_rules

# Enum options that are not one of smimecli.choices (sign's digest is the signing layer's,
# serve's syslog facility the daemon's).
OWN_ENUMS = {("sign", "hash_name"), ("serve", "syslog_facility")}


def _enum_options() -> dict[tuple[str, str], type[Enum]]:
    found: dict[tuple[str, str], type[Enum]] = {}

    def walk(command: Any, path: str) -> None:
        for param in command.params:
            annotation = param.type_descriptor.annotation
            if isinstance(annotation, type) and issubclass(annotation, Enum):
                found[(path, param.name)] = annotation
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(build_app()), "")
    return found


def test_cli_enum_options_are_the_shared_choices() -> None:
    options = _enum_options()
    assert options[("encrypt", "cipher")] is Cipher
    assert options[("encrypt", "key_transport")] is KeyTransport
    assert options[("encrypt", "oaep_hash")] is OaepHash
    assert options[("encrypt", "recipient_id")] is RecipientId
    assert options[("encrypt", "on_missing_cert")] is MissingCertPolicy
    for where, annotation in options.items():
        if where not in OWN_ENUMS:
            assert annotation.__module__ == "smimecli.choices", where


def test_every_cipher_has_a_cms_entry_and_every_cms_entry_is_offered() -> None:
    for name in names(Cipher):
        assert algorithms.get_cipher(name).name == name
    offered = set(algorithms.CIPHERS) - set(algorithms.READ_ONLY_CIPHERS)
    assert offered == set(names(Cipher))
    assert algorithms.CIPHER_NAMES == names(Cipher)
    assert DEFAULT_CIPHER in names(Cipher)
    assert algorithms.DEFAULT_CIPHER == DEFAULT_CIPHER


def test_recipient_accepts_every_choice_and_names_them_when_refusing(pki: Any) -> None:
    cert = pki.alice.cert
    for transport in KeyTransport:
        for digest in OaepHash:
            for rid in RecipientId:
                recipients.Recipient(cert, transport, digest, rid)
    with pytest.raises(UsageError, match="choose one of rsa, rsa-oaep"):
        recipients.Recipient(cert, key_transport="oaep")
    with pytest.raises(UsageError, match="choose one of issuer-serial, ski"):
        recipients.Recipient(cert, recipient_id="serial")


def test_store_names_are_the_shared_choices() -> None:
    assert store.STORE_NAMES == names(StoreName)
    assert rules.STORE_NAMES == names(StoreName)


def _rule(tmp_path: Path, **settings: str) -> Path:
    lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    path = tmp_path / "rules.toml"
    path.write_text(
        "[[rule]]\n"
        'name = "all"\n'
        'recipients = ["a@example.org"]\n'
        'source = { kind = "store", store = "other" }\n' + lines,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("key", "choice"),
    [
        ("cipher", Cipher),
        ("key_transport", KeyTransport),
        ("oaep_hash", OaepHash),
        ("on_missing_cert", MissingCertPolicy),
        ("match", MatchMode),
    ],
)
def test_rules_validator_accepts_exactly_the_choices(
    tmp_path: Path, key: str, choice: type[StrEnum]
) -> None:
    for value in names(choice):
        rule = load_rules(_rule(tmp_path, **{key: value})).rules[0]
        assert getattr(rule, key) == value
    with pytest.raises(ConfigError) as refused:
        load_rules(_rule(tmp_path, **{key: "bogus"}))
    assert " | ".join(names(choice)) in str(refused.value)


def test_rules_source_kinds_and_stores_are_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rule]]\nname = "x"\nrecipients = ["a@example.org"]\nsource = { kind = "ldap" }\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=" \\| ".join(names(SourceKind))):
        load_rules(path)
    for name in names(StoreName):
        path.write_text(
            f'[[rule]]\nname = "x"\nrecipients = ["a@example.org"]\n'
            f'source = {{ kind = "store", store = "{name}" }}\n',
            encoding="utf-8",
        )
        assert load_rules(path).rules[0].source.store == name


def test_choices_imports_only_enum() -> None:
    # Every command imports it, --help included: it must stay free of other imports.
    source = Path(smimecli.choices.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported == {"__future__", "enum"}
    code = (
        "import sys, smimecli.choices\n"
        "print(sorted(m for m in sys.modules if m.startswith('smimecli')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "['smimecli', 'smimecli.choices']", proc.stdout + proc.stderr

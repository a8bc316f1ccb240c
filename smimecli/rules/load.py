"""Reading and validating a rules file.

Validation is strict: any unknown key, wrong type, unknown cipher, missing
name/recipients/source, duplicate name and a wildcard with ``match = "any"`` is a
:class:`~smimecli.errors.ConfigError` (exit 78) whose message names the file, the line when
known, the rule and the key; every problem of the file is reported in one error.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from smimecli.errors import ConfigError, several
from smimecli.rules.lines import Locator
from smimecli.rules.model import (
    AUTO_CIPHER,
    BUILTIN_DEFAULTS,
    KEY_TRANSPORTS,
    MATCH_MODES,
    MISSING_CERT_POLICIES,
    OAEP_HASHES,
    SOURCE_KINDS,
    STORE_NAMES,
    Rule,
    RuleSet,
    SenderSigner,
    SourceSpec,
    cipher_names,
)
from smimecli.rules.patterns import is_wildcard, normalize_address, pattern_regex

_SETTING_KEYS = tuple(BUILTIN_DEFAULTS)
_RULE_KEYS = ("name", "recipients", "source", "sign", *_SETTING_KEYS)
_SIGN_KEYS = ("signer",)
_SIGNER_KEYS = ("senders", "signer")
_SOURCE_KEYS = ("kind", "store", "path", "password_env", "password_file", "thumbprint")
_BOOL_KEYS = ("convert_tnef", "require_trusted")
# where(key): the "rule 'NAME', key 'KEY'" label and the key's line, for fail().
_Where = Callable[[str], tuple[str, int | None]]


def normalize_thumbprint(value: str) -> str:
    """Upper-case hex without separators (Windows shows ``a1 b2 ...`` or ``A1:B2...``)."""
    return re.sub(r"[\s:]", "", value).upper()


def load_rules(
    path: str | Path, *, store_dir: Path | None = None, store_passphrase: bytes | None = None
) -> RuleSet:
    """Read and validate a rules file (sources are opened later, on first use).

    Args:
        path: the TOML rules file; relative source paths are relative to its folder.
        store_dir: the certificate store folder for ``store`` sources and trusted roots.
        store_passphrase: decrypts the store's private keys (signers); None reads
            ``$SMIMECLI_STORE_PASSWORD``.

    Returns:
        The validated :class:`RuleSet`.

    Raises:
        ConfigError: unreadable file, TOML syntax error, or any validation error.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read rules file {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python's message ends with "(at line N, column M)".
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: TOML nesting too deep") from exc
    rules = _Validator(path, text).build(document, store_dir)
    rules.store_passphrase = store_passphrase
    return rules


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.base = path.parent
        self.locator = Locator(text)
        self.ciphers: tuple[str, ...] | None = None
        self.problems: list[ConfigError] = []
        self.signers: list[SenderSigner] = []

    def fail(self, where: str, line: int | None, message: str) -> ConfigError:
        at = f":{line}" if line else ""
        return ConfigError(f"{self.path}{at}: {where}: {message}")

    def build(self, document: dict[str, Any], store_dir: Path | None) -> RuleSet:
        """Validate the whole file; every problem found is reported in one error."""
        try:
            rules = self.collect(document)
        except ConfigError as exc:
            self.problems.append(exc)
        if self.problems:
            # In the order of the file: a rule's source is checked before its other keys.
            ordered = sorted(self.problems, key=self.line_of)
            raise several(ordered)
        return RuleSet(path=self.path, rules=rules, store_dir=store_dir, signers=self.signers)

    def line_of(self, error: ConfigError) -> int:
        """The line an error of :meth:`fail` names (0 when none)."""
        head = error.message.partition(": ")[0]
        number = head[len(str(self.path)) + 1 :]
        return int(number) if head.startswith(f"{self.path}:") and number.isdigit() else 0

    def collect(self, document: dict[str, Any]) -> list[Rule]:
        for key in document:
            if key not in ("defaults", "rule", "signer"):
                self.problems.append(
                    self.fail(
                        f"key {key!r}",
                        self.locator.key_line(0, key),
                        "unknown top-level key (expected [defaults], [[rule]] and [[signer]] "
                        "tables)",
                    )
                )
        self.collect_signers(document.get("signer"))
        defaults = dict(BUILTIN_DEFAULTS)
        raw_defaults = document.get("defaults", {})
        if not isinstance(raw_defaults, dict):
            raise self.fail("key 'defaults'", None, "must be a table: [defaults]")
        defaults_line = self.locator.defaults_line
        for key, value in raw_defaults.items():
            where = f"[defaults], key {key!r}"
            line = self.locator.key_line(defaults_line, key)
            try:
                if key not in _SETTING_KEYS:
                    raise self.fail(
                        where, line, f"unknown key (allowed: {', '.join(_SETTING_KEYS)})"
                    )
                defaults[key] = self.setting(key, value, where, line)
            except ConfigError as exc:
                self.problems.append(exc)
        raw_rules = document.get("rule")
        if raw_rules is None:
            raise self.fail("key 'rule'", None, "no [[rule]] tables: nothing to do")
        if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
            raise self.fail("key 'rule'", None, "must be an array of tables: [[rule]]")
        if not raw_rules:
            raise self.fail("key 'rule'", None, "no [[rule]] tables: nothing to do")
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_rules):
            rule = self.rule(index, raw, defaults)
            if rule is None:
                continue
            if rule.name in seen:
                self.problems.append(
                    self.fail(
                        f"rule {rule.name!r}, key 'name'",
                        self.locator.key_line(rule.line, "name"),
                        f"duplicate rule name (rule #{seen[rule.name] + 1} has it too)",
                    )
                )
                continue
            seen[rule.name] = index
            rules.append(rule)
        return rules

    def rule(self, index: int, raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> Rule | None:
        """The rule, or None when it has problems (each added to ``self.problems``)."""
        found = len(self.problems)
        try:
            rule = self._rule(index, raw, defaults)
        except ConfigError as exc:
            self.problems.append(exc)
            return None
        return rule if len(self.problems) == found else None

    def _rule(self, index: int, raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> Rule:
        line = self.locator.rule_line(index)
        name = raw.get("name")
        label = f"rule #{index + 1}" if not isinstance(name, str) or not name else f"rule {name!r}"

        def where(key: str) -> tuple[str, int | None]:
            return f"{label}, key {key!r}", self.locator.key_line(line, key.split(".")[0])

        self._rule_keys(raw, label, line, where)
        try:  # checked first, so that a problem below does not hide one of the source
            source: SourceSpec | None = self.source(raw["source"], label, line)
        except ConfigError as exc:
            self.problems.append(exc)
            source = None
        if not isinstance(name, str) or not name.strip():
            raise self.fail(*where("name"), "must be a non-empty string")
        recipients = self._recipients(raw["recipients"], where)
        settings = self._settings(raw, defaults, recipients, where)
        sign = None
        if "sign" in raw:
            try:
                sign = self.sign(raw["sign"], *where("sign"))
            except ConfigError as exc:
                self.problems.append(exc)
        if source is None:
            raise self.problems.pop()
        return Rule(
            name=name,
            index=index,
            line=line,
            recipients=tuple(recipients),
            source=source,
            match=settings["match"],
            cipher=settings["cipher"],
            key_transport=settings["key_transport"],
            oaep_hash=settings["oaep_hash"],
            convert_tnef=settings["convert_tnef"],
            on_missing_cert=settings["on_missing_cert"],
            require_trusted=settings["require_trusted"],
            _regexes=tuple(pattern_regex(normalize_address(p)) for p in recipients),
            sign=sign,
        )

    def _rule_keys(
        self, raw: Mapping[str, Any], label: str, line: int | None, where: _Where
    ) -> None:
        """Unknown keys (each a problem) and missing ones (the last raised)."""
        for key in raw:
            if key not in _RULE_KEYS:
                self.problems.append(
                    self.fail(*where(key), f"unknown key (allowed: {', '.join(_RULE_KEYS)})")
                )
        missing = [key for key in ("name", "recipients", "source") if key not in raw]
        for key in missing[:-1]:
            self.problems.append(self.fail(label, line, f"missing key {key!r}"))
        if missing:
            raise self.fail(label, line, f"missing key {missing[-1]!r}")

    def _recipients(self, recipients: Any, where: _Where) -> list[str]:
        """A rule's ``recipients``: a non-empty list of address patterns."""
        if isinstance(recipients, str):
            raise self.fail(*where("recipients"), f'must be a list: recipients = ["{recipients}"]')
        if not isinstance(recipients, list) or not recipients:
            raise self.fail(*where("recipients"), "must be a non-empty list of address patterns")
        for pattern in recipients:
            if not isinstance(pattern, str) or not pattern:
                raise self.fail(*where("recipients"), f"{pattern!r} is not an address pattern")
            if any(c.isspace() for c in pattern) or "," in pattern:
                raise self.fail(
                    *where("recipients"),
                    f"{pattern!r}: one address pattern per string, without spaces or commas",
                )
        return recipients

    def _settings(
        self,
        raw: Mapping[str, Any],
        defaults: Mapping[str, Any],
        recipients: Sequence[str],
        where: _Where,
    ) -> dict[str, Any]:
        """A rule's settings over the defaults (each bad value a problem)."""
        settings = dict(defaults)
        for key in _SETTING_KEYS:
            if key in raw:
                try:
                    settings[key] = self.setting(key, raw[key], *where(key))
                except ConfigError as exc:
                    self.problems.append(exc)
        if settings["match"] == "any":
            wild = [p for p in recipients if is_wildcard(p)]
            if wild:
                raise self.fail(
                    *where("match"),
                    f'match = "any" with the wildcard pattern {wild[0]!r}: one certificate '
                    'cannot serve many addresses (use match = "email" or exact addresses)',
                )
        return settings

    def sign(self, value: Any, where: str, line: int | None) -> str:
        """A rule's ``sign = { signer = "SELECTOR" }``: the selector."""
        example = 'sign = { signer = "alice@example.com" }'
        if not isinstance(value, dict):
            raise self.fail(where, line, f"must be a table: {example}")
        base = where.removesuffix("'sign'")
        for key in value:
            if key not in _SIGN_KEYS:
                raise self.fail(f"{base}'sign.{key}'", line, "unknown key (allowed: signer)")
        signer = value.get("signer")
        if not isinstance(signer, str) or not signer.strip():
            raise self.fail(
                f"{base}'sign.signer'",
                line,
                f"must be a non-empty string (a certificate of the store's 'my'): {example}",
            )
        return signer.strip()

    def collect_signers(self, raw: Any) -> None:
        """The ``[[signer]]`` tables (problems go to ``self.problems``)."""
        if raw is None:
            return
        if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
            self.problems.append(
                self.fail("key 'signer'", None, "must be an array of tables: [[signer]]")
            )
            return
        for index, table in enumerate(raw):
            line = self.locator.signer_line(index)
            label = f"signer #{index + 1}"
            try:
                self.signers.append(self._signer(index, table, label, line))
            except ConfigError as exc:
                self.problems.append(exc)

    def _signer(
        self, index: int, table: Mapping[str, Any], label: str, line: int | None
    ) -> SenderSigner:
        def where(key: str) -> tuple[str, int | None]:
            return f"{label}, key {key!r}", self.locator.key_line(line, key)

        for key in table:
            if key not in _SIGNER_KEYS:
                raise self.fail(*where(key), f"unknown key (allowed: {', '.join(_SIGNER_KEYS)})")
        for key in _SIGNER_KEYS:
            if key not in table:
                raise self.fail(label, line, f"missing key {key!r}")
        senders = table["senders"]
        if isinstance(senders, str):
            raise self.fail(*where("senders"), f'must be a list: senders = ["{senders}"]')
        if not isinstance(senders, list) or not senders:
            raise self.fail(*where("senders"), "must be a non-empty list of address patterns")
        for pattern in senders:
            if not isinstance(pattern, str) or not pattern or any(c.isspace() for c in pattern):
                raise self.fail(*where("senders"), f"{pattern!r} is not an address pattern")
        signer = table["signer"]
        if not isinstance(signer, str) or not signer.strip():
            raise self.fail(
                *where("signer"),
                "must be a non-empty string (a certificate of the store's 'my')",
            )
        return SenderSigner(
            index,
            line,
            tuple(senders),
            signer.strip(),
            tuple(pattern_regex(normalize_address(p)) for p in senders),
        )

    def setting(self, key: str, value: Any, where: str, line: int | None) -> Any:
        if key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise self.fail(where, line, f"must be true or false, not {value!r}")
            return value
        if not isinstance(value, str):
            raise self.fail(where, line, f"must be a string, not {value!r}")
        choices: Sequence[str]
        if key == "cipher":
            if self.ciphers is None:
                self.ciphers = (*cipher_names(), AUTO_CIPHER)
            choices = self.ciphers
        else:
            choices = {
                "match": MATCH_MODES,
                "key_transport": KEY_TRANSPORTS,
                "oaep_hash": OAEP_HASHES,
                "on_missing_cert": MISSING_CERT_POLICIES,
            }[key]
        if value not in choices:
            what = "cipher" if key == "cipher" else "value"
            raise self.fail(where, line, f"unknown {what} {value!r} (choose {_one_of(choices)})")
        return value

    def source(self, raw: Any, label: str, line: int | None) -> SourceSpec:
        def fail(key: str, message: str) -> ConfigError:
            return self.fail(
                f"{label}, key {key!r}", self.locator.key_line(line, "source"), message
            )

        if not isinstance(raw, dict):
            raise fail("source", 'must be a table: source = { kind = "store", store = "other" }')
        for key in raw:
            if key not in _SOURCE_KEYS:
                raise fail(f"source.{key}", f"unknown key (allowed: {', '.join(_SOURCE_KEYS)})")
        for key, value in raw.items():
            if not isinstance(value, str) or not value:
                raise fail(f"source.{key}", f"must be a non-empty string, not {value!r}")
        kind = raw.get("kind")
        if kind is None:
            raise fail("source.kind", f"missing (choose {_one_of(SOURCE_KINDS)})")
        if kind not in SOURCE_KINDS:
            raise fail("source.kind", f"unknown kind {kind!r} (choose {_one_of(SOURCE_KINDS)})")
        allowed = {
            "store": {"kind", "store", "thumbprint"},
            "pfx": {"kind", "path", "password_env", "password_file", "thumbprint"},
        }.get(kind, {"kind", "path", "thumbprint"})
        for key in raw:
            if key not in allowed:
                raise fail(f"source.{key}", f"not used by a {kind!r} source")
        store = raw.get("store")
        if kind == "store":
            store = store or "other"
            if store not in STORE_NAMES:
                raise fail(
                    "source.store", f"unknown store {store!r} (choose {_one_of(STORE_NAMES)})"
                )
        path = None
        if kind != "store":
            if "path" not in raw:
                raise fail("source.path", f'a {kind!r} source needs path = "..."')
            path = self.base / Path(raw["path"]).expanduser()
        if "password_env" in raw and "password_file" in raw:
            raise fail("source.password_file", "give password_env or password_file, not both")
        password_file = None
        if "password_file" in raw:
            password_file = self.base / Path(raw["password_file"]).expanduser()
        thumbprint = raw.get("thumbprint")
        if thumbprint is not None:
            thumbprint = normalize_thumbprint(thumbprint)
            if not re.fullmatch(r"[0-9A-F]{8,40}", thumbprint):
                raise fail(
                    "source.thumbprint",
                    f"{raw['thumbprint']!r} is not a SHA-1 thumbprint (8 to 40 hex digits)",
                )
        return SourceSpec(
            kind=kind,
            store=store,
            path=path,
            password_env=raw.get("password_env"),
            password_file=password_file,
            thumbprint=thumbprint,
        )


def _one_of(choices: Iterable[str]) -> str:
    return " | ".join(choices)

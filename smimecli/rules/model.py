"""The rules file: a strict TOML model of recipient -> certificate rules.

A rules file has an optional ``[defaults]`` table and an ordered list of ``[[rule]]``
tables. Each rule names the recipient patterns it serves, where their certificates come
from (a certificate source), and how to encrypt to them. Validation is strict: any unknown
key, wrong type, unknown cipher, missing name/recipients/source, duplicate name, a wildcard
with ``match = "any"``, and (when the sources are opened) an unreadable source is a
:class:`~smimecli.errors.ConfigError` (exit 78) whose message names the file, the line when
known, the rule and the key.

Patterns: ``*`` any run of characters, ``?`` one character, whole address,
case-insensitive. Everything else is literal (``[`` included: no fnmatch sets).

Sources are opened lazily, once per :class:`RuleSet` (two rules naming the same source
share it), so a batch run that encrypts many messages with one rule set reads every .pfx,
.sst or folder once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smimecli.choices import (
    KeyTransport,
    MatchMode,
    MissingCertPolicy,
    OaepHash,
    SourceKind,
    StoreName,
    names,
)
from smimecli.errors import ConfigError, IOFailedError, SmimeError, TempFailError, several

if TYPE_CHECKING:
    from smimecli.certs.sources import CertificateSource
    from smimecli.certs.store import Store

SOURCE_KINDS = names(SourceKind)
STORE_NAMES = names(StoreName)
MATCH_MODES = names(MatchMode)
KEY_TRANSPORTS = names(KeyTransport)
OAEP_HASHES = names(OaepHash)
MISSING_CERT_POLICIES = names(MissingCertPolicy)
# cipher = "auto": the strongest cipher every encrypted recipient announced (smimecli.rules.plan).
AUTO_CIPHER = "auto"

# the values used when neither the rule nor [defaults] sets a key.
BUILTIN_DEFAULTS: dict[str, Any] = {
    "match": "email",
    "cipher": "aes256",
    "key_transport": "rsa",
    "oaep_hash": "sha256",
    "convert_tnef": True,
    "on_missing_cert": "pass",
    "require_trusted": False,
}
_SETTING_KEYS = tuple(BUILTIN_DEFAULTS)
_RULE_KEYS = ("name", "recipients", "source", "sign", *_SETTING_KEYS)
_SIGN_KEYS = ("signer",)
_SIGNER_KEYS = ("senders", "signer")
_SOURCE_KEYS = ("kind", "store", "path", "password_env", "password_file", "thumbprint")
_BOOL_KEYS = ("convert_tnef", "require_trusted")


def cipher_names() -> tuple[str, ...]:
    """The content cipher names the CMS layer implements (smimecli.cms.algorithms)."""
    from smimecli.cms import algorithms

    return tuple(algorithms.CIPHER_NAMES)


# --- patterns -------------------------------------------------------------------------------


def is_wildcard(pattern: str) -> bool:
    """Whether a recipient pattern holds ``*`` or ``?``."""
    return "*" in pattern or "?" in pattern


# RFC 5321 section 4.5.3.1.3: a path (the address between ``<`` and ``>``) is at most 256
# octets with its brackets; a longer address is no address an MTA delivers to.
MAX_ADDRESS_OCTETS = 254


def address_problem(address: str) -> str | None:
    """Why an address is not usable (too long for SMTP), or None."""
    size = len(address.encode("utf-8", "surrogatepass"))
    if size > MAX_ADDRESS_OCTETS:
        return (
            f"recipient address {address[:40]}... has {size} octets, more than SMTP allows "
            f"({MAX_ADDRESS_OCTETS}, RFC 5321): not a usable address"
        )
    return None


def _domain_to_ascii(domain: str) -> str:
    """A domain as an MTA compares it: no trailing dot, lower case, IDN labels as A-labels.

    A label holding a wildcard, or one Python's IDNA codec refuses, stays in lower case.
    """
    domain = domain.rstrip(".").lower()
    if domain.isascii():
        return domain
    labels = []
    for label in domain.split("."):
        if label.isascii() or is_wildcard(label):
            labels.append(label)
            continue
        try:
            labels.append(label.encode("idna").decode("ascii").lower())
        except UnicodeError:
            labels.append(label)
    return ".".join(labels)


def normalize_address(address: str) -> str:
    """An address (or a recipient pattern) in the form rules compare.

    Surrounding space and ``<>`` go; the domain (after the last ``@``) loses a trailing dot,
    is lower-cased and has its internationalised labels as A-labels (``xn--``), as Postfix
    does before it delivers. The local part is kept: matching ignores its case anyway.
    """
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    return f"{local}@{_domain_to_ascii(domain)}"


def fold(text: str) -> str:
    """``text`` case-folded character by character, as patterns compare it."""
    return "".join(_fold(text))


def _fold(text: str) -> list[str]:
    """One case-folded string per character (lengths stay, so ``?`` stays one character)."""
    return [c.lower() for c in text]


def _glob(pattern: list[str], text: list[str], star: str, one: str, not_one: str) -> bool:
    """Whole-text glob match without backtracking: O(len(pattern) * len(text)) at worst.

    ``star`` in the pattern matches any run, ``one`` any single character except
    ``not_one``; every other pattern character matches itself (already case-folded).
    The classic two-pointer method: on a mismatch, only the last ``*`` is retried, one
    character further; earlier stars never need to take back what they gave.
    """
    p = t = 0
    star_p = -1
    star_t = 0
    plen, tlen = len(pattern), len(text)
    while t < tlen:
        if p < plen and pattern[p] == star:
            star_p, star_t = p, t
            p += 1
            continue
        if p < plen and (pattern[p] == text[t] or (pattern[p] == one and text[t] != not_one)):
            p += 1
            t += 1
            continue
        if star_p < 0:
            return False
        star_t += 1
        p, t = star_p + 1, star_t
    while p < plen and pattern[p] == star:
        p += 1
    return p == plen


class Glob:
    """A compiled recipient pattern: ``*`` any run of characters, ``?`` one, whole address,
    case-insensitive, in time linear in the address for a given pattern (no regex, so no
    catastrophic backtracking on a hostile address)."""

    __slots__ = ("_folded", "_literal", "_suffix", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._folded = _fold(pattern)
        self._literal = fold(pattern) if not is_wildcard(pattern) else None
        rest = pattern[1:]
        self._suffix = fold(rest) if pattern.startswith("*") and not is_wildcard(rest) else None

    def fullmatch(self, text: str) -> str | None:
        """``text`` when the pattern matches all of it, else None (like ``re.fullmatch``)."""
        if self._literal is not None:
            return text if fold(text) == self._literal else None
        if self._suffix is not None:
            return text if fold(text).endswith(self._suffix) else None
        return text if _glob(self._folded, _fold(text), "*", "?", "") else None


def pattern_regex(pattern: str) -> Glob:
    """Compile a recipient pattern (see :class:`Glob`); matching is case-insensitive.

    Only ``*`` and ``?`` are special; every other character is literal, so ``[``, ``.``
    and ``+`` (common in addresses) match themselves.
    """
    return Glob(pattern)


# Pattern containment (for "rule shadowed" warnings): a wildcard of the later pattern is
# written as a control character the earlier pattern's literals can never match.
_STAR, _QMARK = "\x01", "\x02"


def pattern_covers(earlier: str, later: str) -> bool:
    """Whether every address matching ``later`` also matches ``earlier`` (sound, not complete).

    ``*`` in ``earlier`` absorbs anything, ``?`` any one character or a ``?`` of ``later``
    (never a ``*``), a literal only the same literal.
    """
    encoded = later.replace("*", _STAR).replace("?", _QMARK)
    return _glob(_fold(earlier), _fold(encoded), "*", "?", _STAR)


def example_address(pattern: str) -> str:
    """One address that matches a pattern (for ``rules test`` when a source names none)."""
    candidate = pattern.replace("*", "example").replace("?", "x")
    if "@" not in candidate:
        fallback = "user@example.invalid"
        if pattern_regex(pattern).fullmatch(fallback):
            return fallback
    return candidate


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """Where a rule's certificates come from, as written in the rules file.

    ``path`` and ``password_file`` are already resolved against the rules file's folder.
    """

    kind: str
    store: str | None = None
    path: Path | None = None
    password_env: str | None = None
    password_file: Path | None = None
    thumbprint: str | None = None

    def describe(self) -> str:
        """A short human description: ``store other``, ``pfx certs/a.pfx``."""
        if self.kind == "store":
            return f"store {self.store}"
        return f"{self.kind} {self.path}"


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]``: patterns, a source, and the encryption settings."""

    name: str
    index: int  # 0-based position in the file: the first match wins
    line: int | None
    recipients: tuple[str, ...]
    source: SourceSpec
    match: str
    cipher: str
    key_transport: str
    oaep_hash: str
    convert_tnef: bool
    on_missing_cert: str
    require_trusted: bool
    _regexes: tuple[Glob, ...] = field(repr=False, compare=False, default=())
    sign: str | None = None  # sign = { signer = "SELECTOR" }: sign before encrypting

    def matches(self, address: str) -> bool:
        """Whether one of this rule's patterns matches the whole address (any case, the
        domain compared as :func:`normalize_address` writes it)."""
        address = normalize_address(address)
        return any(regex.fullmatch(address) for regex in self._regexes)

    @property
    def wildcards(self) -> tuple[str, ...]:
        """The patterns holding ``*`` or ``?``."""
        return tuple(p for p in self.recipients if is_wildcard(p))

    @property
    def exact(self) -> tuple[str, ...]:
        """The patterns that are plain addresses."""
        return tuple(p for p in self.recipients if not is_wildcard(p))


@dataclass(frozen=True)
class SenderSigner:
    """One ``[[signer]]``: mail from these sender patterns is signed with this certificate
    of the store's ``my`` (a selector: thumbprint, email or CN)."""

    index: int
    line: int | None
    senders: tuple[str, ...]
    signer: str
    _regexes: tuple[Glob, ...] = field(repr=False, compare=False, default=())

    def matches(self, address: str) -> bool:
        """Whether one of the sender patterns matches the whole address."""
        address = normalize_address(address)
        return any(regex.fullmatch(address) for regex in self._regexes)


@dataclass
class RuleSet:
    """A validated rules file, with its sources opened on first use and then kept.

    Args:
        path: the rules file.
        rules: the rules in file order.
        store_dir: the certificate store folder (for ``store`` sources and trusted roots).
    """

    path: Path
    rules: list[Rule]
    store_dir: Path | None = None
    _sources: dict[SourceSpec, CertificateSource] = field(default_factory=dict, repr=False)
    _store: Store | None = field(default=None, repr=False)
    _trust: tuple[list[Any], list[Any]] | None = field(default=None, repr=False)

    _index: _MatchIndex | None = field(default=None, repr=False)
    signers: list[SenderSigner] = field(default_factory=list)
    _signers: dict[str, Any] = field(default_factory=dict, repr=False)

    def signer_for_sender(self, address: str) -> SenderSigner | None:
        """The first ``[[signer]]`` in file order whose sender pattern matches ``address``."""
        return next((s for s in self.signers if s.matches(address)), None)

    def load_signer(self, selector: str, where: str) -> Any:
        """The signer a selector names in the store's ``my``, loaded once (a
        :class:`smimecli.sign.signers.Signer`). Errors keep their status and name ``where``."""
        found = self._signers.get(selector)
        if found is None:
            from smimecli.sign.signers import signer_from_store

            try:
                found = signer_from_store(self.store(), selector, pfx_option="another signer")
            except SmimeError as exc:
                # A signer the store lacks is a fault of the configuration (78); a missing
                # key (77) or a busy store (75) keep their status.
                from smimecli.errors import AuthError

                keep = isinstance(exc, AuthError | TempFailError | IOFailedError)
                kind = type(exc) if keep else ConfigError
                raise kind(f"{where}: signer {selector!r}: {exc.message}") from exc
            self._signers[selector] = found
        return found

    def first_match(self, address: str) -> Rule | None:
        """The first rule in file order whose pattern matches ``address``.

        Exact addresses and ``*@domain`` patterns are looked up in dicts; only the other
        wildcard patterns are tried one by one, so a file of thousands of plain rules stays
        fast.
        """
        if self._index is None:
            self._index = _MatchIndex(self.rules)
        return self._index.first(normalize_address(address))

    def rule_named(self, name: str) -> Rule:
        """The rule called ``name``; ConfigError when there is none."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        known = ", ".join(r.name for r in self.rules)
        raise ConfigError(f"{self.path}: no rule named {name!r} (rules: {known})")

    def where(self, rule: Rule, key: str | None = None) -> str:
        """``FILE:LINE: rule 'NAME'[, key 'KEY']`` for error messages."""
        line = f":{rule.line}" if rule.line else ""
        text = f"{self.path}{line}: rule {rule.name!r}"
        return f"{text}, key {key!r}" if key else text

    def store(self) -> Store:
        """The certificate store, opened once."""
        if self._store is None:
            if self.store_dir is None:
                raise ConfigError(f"{self.path}: a store source needs a certificate store folder")
            from smimecli.certs.store import Store

            self._store = Store.open(self.store_dir, readonly=True)
        return self._store

    def trust(self) -> tuple[list[Any], list[Any]]:
        """The store's ``root`` and ``ca`` certificates (for ``require_trusted``), loaded once."""
        if self._trust is None:
            if self.store_dir is None:
                self._trust = ([], [])
            else:
                store = self.store()
                self._trust = (
                    [c.cert for c in store.certificates("root")],
                    [c.cert for c in store.certificates("ca")],
                )
        return self._trust

    def source(self, rule: Rule) -> CertificateSource:
        """The rule's certificate source, opened on first use (ConfigError when unreadable)."""
        spec = rule.source
        cached = self._sources.get(spec)
        if cached is None:
            cached = self._open_source(rule)
            self._sources[spec] = cached
        return cached

    def open_all(self) -> None:
        """Open every rule's source now (``rules check``): unreadable ones are errors."""
        for rule in self.rules:
            self.source(rule)
            if rule.match == "any":
                check_any_source(self, rule)

    def _open_source(self, rule: Rule) -> CertificateSource:
        from smimecli.certs import sources

        spec = rule.source
        try:
            if spec.kind == "store":
                return sources.StoreSource(self.store(), spec.store or "other")
            assert spec.path is not None
            if not spec.path.exists():
                raise ConfigError(f"{self.where(rule, 'source.path')}: {spec.path} does not exist")
            opened: CertificateSource
            if spec.kind == "pfx":
                opened = sources.PfxSource(spec.path, self._pfx_password(rule))
            elif spec.kind == "sst":
                opened = sources.SstSource(spec.path)
            elif spec.kind == "cer":
                opened = sources.CerSource(spec.path)
            else:
                opened = sources.DirSource(spec.path)
            # File sources load lazily: load now, so that a bad file is reported here,
            # with the rule and the key.
            opened.certificates()
            return opened
        except ConfigError as exc:
            if exc.message.startswith(str(self.path)):
                raise
            raise ConfigError(f"{self.where(rule, 'source')}: {exc.message}") from exc
        except (TempFailError, IOFailedError):
            raise  # a locked store or a disk fault: retry later, not a configuration fault
        except SmimeError as exc:
            raise ConfigError(
                f"{self.where(rule, 'source')}: cannot read {spec.describe()}: {exc.message}"
            ) from exc
        except OSError as exc:
            raise ConfigError(
                f"{self.where(rule, 'source')}: cannot read {spec.describe()}: "
                f"{exc.strerror or exc}"
            ) from exc

    def _pfx_password(self, rule: Rule) -> bytes | None:
        from smimecli.passwords import read_password

        spec = rule.source
        key = "source.password_env" if spec.password_env else "source.password_file"
        try:
            return read_password(
                password_file=str(spec.password_file) if spec.password_file else None,
                password_env=spec.password_env,
            )
        except SmimeError as exc:
            raise ConfigError(f"{self.where(rule, key)}: {exc.message}") from exc


def _domain_pattern(pattern: str) -> str | None:
    """The folded domain of a ``*@domain`` pattern (no other wildcard), else None."""
    if pattern.startswith("*@") and not is_wildcard(pattern[2:]):
        return fold(pattern[2:])
    return None


class _MatchIndex:
    """Which rule first matches an address, without trying every pattern of every rule."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.exact: dict[str, int] = {}
        self.domains: dict[str, int] = {}
        self.others: list[tuple[int, Glob]] = []
        for position, rule in enumerate(self.rules):
            for regex in rule._regexes:
                pattern = regex.pattern
                domain = _domain_pattern(pattern)
                if not is_wildcard(pattern):
                    self.exact.setdefault(fold(pattern), position)
                elif domain is not None:
                    self.domains.setdefault(domain, position)
                else:
                    self.others.append((position, regex))

    def first(self, address: str) -> Rule | None:
        folded = fold(address)
        best = self.exact.get(folded, len(self.rules))
        at = folded.find("@")
        while at >= 0:
            found = self.domains.get(folded[at + 1 :])
            if found is not None and found < best:
                best = found
            at = folded.find("@", at + 1)
        for position, regex in self.others:
            if position >= best:
                break
            if regex.fullmatch(address):
                best = position
                break
        return self.rules[best] if best < len(self.rules) else None


def check_any_source(rules: RuleSet, rule: Rule) -> None:
    """A source with several certificates and ``match = "any"`` needs a thumbprint.

    CA certificates that come with a .pfx chain do not count: they are never recipients.
    """
    if rule.source.thumbprint:
        return
    from smimecli.certs.formats import is_ca

    leaves = [e for e in rules.source(rule).certificates() if not is_ca(e.cert)]
    if len(leaves) > 1:
        raise ConfigError(
            f'{rules.where(rule, "source.thumbprint")}: match = "any" but '
            f"{rule.source.describe()} holds {len(leaves)} certificates; "
            'add thumbprint = "..." to the source'
        )


def normalize_thumbprint(value: str) -> str:
    """Upper-case hex without separators (Windows shows ``a1 b2 ...`` or ``A1:B2...``)."""
    return re.sub(r"[\s:]", "", value).upper()


# --- loading and validation -----------------------------------------------------------------


class _Locator:
    """Line numbers of ``[[rule]]`` headers and keys, for error messages.

    tomllib reports lines only for syntax errors; for semantic errors a light scan of the
    text finds the Nth ``[[rule]]`` header and a key line within its block.
    """

    _HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.rule_lines: list[int] = []
        self.signer_lines: list[int] = []
        self.defaults_line: int | None = None
        self.headers: list[int] = []
        for number, line in enumerate(self.lines, start=1):
            found = self._HEADER.match(line)
            if not found:
                continue
            self.headers.append(number)
            name = found.group(1).strip().strip("\"'")
            if line.lstrip().startswith("[[") and name == "rule":
                self.rule_lines.append(number)
            elif line.lstrip().startswith("[[") and name == "signer":
                self.signer_lines.append(number)
            elif name == "defaults":
                self.defaults_line = number

    def rule_line(self, index: int) -> int | None:
        return self.rule_lines[index] if index < len(self.rule_lines) else None

    def signer_line(self, index: int) -> int | None:
        return self.signer_lines[index] if index < len(self.signer_lines) else None

    def key_line(self, start: int | None, key: str) -> int | None:
        if start is None:
            return None
        later = [h for h in self.headers if h > start]
        end = later[0] if later else len(self.lines) + 1
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for number in range(start + 1, end):
            if pattern.match(self.lines[number - 1]):
                return number
        return start


def load_rules(path: str | Path, *, store_dir: Path | None = None) -> RuleSet:
    """Read and validate a rules file (sources are opened later, on first use).

    Args:
        path: the TOML rules file; relative source paths are relative to its folder.
        store_dir: the certificate store folder for ``store`` sources and trusted roots.

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
    return _Validator(path, text).build(document, store_dir)


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.base = path.parent
        self.locator = _Locator(text)
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
        try:  # checked first, so that a problem below does not hide one of the source
            source: SourceSpec | None = self.source(raw["source"], label, line)
        except ConfigError as exc:
            self.problems.append(exc)
            source = None
        if not isinstance(name, str) or not name.strip():
            raise self.fail(*where("name"), "must be a non-empty string")
        recipients = raw["recipients"]
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


def shadowed_patterns(rules: RuleSet) -> list[tuple[Rule, str, Rule, str]]:
    """Patterns no address can reach because an earlier rule's pattern covers them.

    Exact addresses and ``*@domain`` patterns are indexed in dicts; only the other wildcard
    patterns are compared pair by pair, so a file of thousands of plain rules is checked
    in about linear time.

    Returns:
        (later rule, its pattern, earlier rule, the covering pattern) tuples.
    """
    exact: dict[str, int] = {}
    domains: dict[str, int] = {}
    others: list[tuple[int, str]] = []
    found = []
    for position, rule in enumerate(rules.rules):
        for pattern in rule.recipients:
            normal = normalize_address(pattern)
            key = fold(normal)
            best = position
            if not is_wildcard(normal):
                best = min(best, exact.get(key, best))
            at = key.find("@")
            while at >= 0:
                if not is_wildcard(key[at:]):
                    best = min(best, domains.get(key[at + 1 :], best))
                at = key.find("@", at + 1)
            for earlier_position, other in others:
                if earlier_position >= best:
                    break
                if pattern_covers(other, normal):
                    best = earlier_position
                    break
            if best < position:
                earlier = rules.rules[best]
                cover = next(
                    p for p in earlier.recipients if pattern_covers(normalize_address(p), normal)
                )
                found.append((rule, pattern, earlier, cover))
        for pattern in rule.recipients:
            normal = normalize_address(pattern)
            domain = _domain_pattern(normal)
            if not is_wildcard(normal):
                exact.setdefault(fold(normal), position)
            elif domain is not None:
                domains.setdefault(domain, position)
            else:
                others.append((position, normal))
    return found


def shadow_warning(where: str, pattern: str, earlier: Rule, cover: str) -> str:
    """The warning for a pattern an earlier rule always catches first (``rules check`` and
    ``rules test`` say it the same way, each with its own ``where``)."""
    return (
        f"{where}: pattern {pattern!r} is shadowed by {cover!r} of the earlier rule "
        f"{earlier.name!r}"
    )

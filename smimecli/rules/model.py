"""The rules file as values: a :class:`RuleSet` holds the rules in file order
(:class:`Rule`, each with its certificate source, :class:`SourceSpec`) and the ``[[signer]]``
tables (:class:`SenderSigner`).

A rules file has an optional ``[defaults]`` table and an ordered list of ``[[rule]]``
tables. Each rule names the recipient patterns it serves, where their certificates come
from (a certificate source), and how to encrypt to them. :mod:`smimecli.rules.load` reads
and validates the file; an unreadable source is a :class:`~smimecli.errors.ConfigError`
(exit 78) when it is opened.

Sources are opened lazily, once per :class:`RuleSet` (two rules naming the same source
share it), so a batch run that encrypts many messages with one rule set reads every .pfx,
.sst or folder once.
"""

from __future__ import annotations

from collections.abc import Iterable
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
from smimecli.errors import ConfigError, IOFailedError, SmimeError, TempFailError
from smimecli.notices import Notice, merge_notices
from smimecli.rules.patterns import Glob, MatchIndex, is_wildcard, normalize_address

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


def cipher_names() -> tuple[str, ...]:
    """The content cipher names the CMS layer implements (smimecli.cms.algorithms)."""
    from smimecli.cms import algorithms

    return tuple(algorithms.CIPHER_NAMES)


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
        store_passphrase: decrypts the store's private keys (a ``[[signer]]`` or ``sign``
            key); None reads ``$SMIMECLI_STORE_PASSWORD``.
    """

    path: Path
    rules: list[Rule]
    store_dir: Path | None = None
    _sources: dict[SourceSpec, CertificateSource] = field(default_factory=dict, repr=False)
    store_passphrase: bytes | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)
    _trust: tuple[list[Any], list[Any]] | None = field(default=None, repr=False)

    _index: MatchIndex | None = field(default=None, repr=False)
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
            self._index = MatchIndex(self.rules)
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

            self._store = Store.open(
                self.store_dir, readonly=True, passphrase=self.store_passphrase
            )
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

    def source_notices(self, rules: Iterable[Rule]) -> list[Notice]:
        """What the opened sources of these rules said when they were read (a ``dir``
        source's ``skipped-file`` for a file it could not read, ...), each once."""
        groups = [getattr(self._sources.get(rule.source), "notices", ()) for rule in rules]
        return list(merge_notices(*groups))

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

"""Certificate sources: where a rule finds its recipients' certificates.

Stable names (the rules engine builds on them):

- :class:`CertificateSource` (Protocol): ``certificates() -> list[CertEntry]`` (every
  certificate the source holds), ``for_address(address) -> list[CertEntry]`` (those naming
  the address, case-insensitive) and ``describe() -> str`` (for messages).
- :class:`StoreSource` ``(store, store_name)``: a store (``my``/``other``/``root``/``ca``);
  ``for_address`` uses the store's e-mail index, so it stays fast in a large store.
- :class:`PfxSource` ``(path, password)``: the certificates of a .pfx/.p12.
- :class:`SstSource` ``(path)``: a serialized store.
- :class:`CerSource` ``(path)``: a file holding exactly one certificate (else ConfigError).
- :class:`DirSource` ``(path)``: every certificate file in a folder (not recursive);
  unreadable files are skipped with a ``skipped-file`` notice.

File sources never log or print: what a person should hear about (a file skipped, a
certificate inside a file skipped, a key without its certificate) is kept as
:class:`~smimecli.notices.Notice` values in the source's ``notices`` once it is loaded.

File sources load lazily, once, on the first call. A file that cannot be read or parsed is
a :class:`ConfigError` (78) naming the file: it is a problem of the rules configuration.
Every entry is a :class:`~smimecli.certs.formats.CertEntry` (``.cert``, ``.key``,
``.friendly_name``, ``.thumbprint``); usability is decided by
:func:`smimecli.certs.usable.problems`, not by the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from smimecli.certs import names
from smimecli.certs.formats import CertEntry, load_certificates
from smimecli.certs.store import Store, check_store_name
from smimecli.errors import ConfigError, SmimeError
from smimecli.notices import Notice


@runtime_checkable
class CertificateSource(Protocol):
    """Anything that can answer "certificates for this address"."""

    def certificates(self) -> list[CertEntry]:
        """Every certificate the source holds."""
        ...

    def for_address(self, address: str) -> list[CertEntry]:
        """The certificates that name ``address`` (SAN rfc822Name or subject E=)."""
        ...

    def describe(self) -> str:
        """A short description for messages (``store 'other'``, ``pfx certs/a.pfx``)."""
        ...


def _by_address(entries: list[CertEntry]) -> dict[str, list[CertEntry]]:
    """Address -> the entries naming it, in entry order (built once per source)."""
    index: dict[str, list[CertEntry]] = {}
    for entry in entries:
        for address in names.emails(entry.cert):
            index.setdefault(address, []).append(entry)
    return index


class StoreSource:
    """One named store of the certificate store."""

    def __init__(self, store: Store, store_name: str = "other") -> None:
        self.store = store
        self.store_name = check_store_name(store_name)

    def certificates(self) -> list[CertEntry]:
        """Every certificate in the named store."""
        return [
            CertEntry(c.cert, None, c.friendly_name)
            for c in self.store.certificates(self.store_name)
        ]

    def for_address(self, address: str) -> list[CertEntry]:
        """Indexed lookup by address."""
        return [
            CertEntry(c.cert, None, c.friendly_name)
            for c in self.store.by_email(address, self.store_name)
        ]

    def describe(self) -> str:
        """``store 'other'``."""
        return f"store '{self.store_name}'"


class _PathSource:
    """A source backed by a file or a folder, read once on first use."""

    kind: str  # each source names itself: "pfx", "sst", "cer", "dir"

    def __init__(self, path: Path | str, password: bytes | None = None) -> None:
        self.path = Path(path)
        self.password = password
        self._entries: list[CertEntry] | None = None
        self.notices: list[Notice] = []  # filled when the source is loaded
        self._index: dict[str, list[CertEntry]] | None = None

    def _load(self) -> list[CertEntry]:
        raise NotImplementedError

    def _loaded(self) -> list[CertEntry]:
        if self._entries is None:
            self._entries = self._load()
        return self._entries

    def certificates(self) -> list[CertEntry]:
        """Every certificate the source holds (each once)."""
        return list(self._loaded())

    def for_address(self, address: str) -> list[CertEntry]:
        """The source's certificates naming ``address``."""
        if self._index is None:
            self._index = _by_address(self._loaded())
        return list(self._index.get(address.strip().lower(), ()))

    def describe(self) -> str:
        """``KIND path``, e.g. ``pfx certs/alice.pfx``."""
        return f"{self.kind} {self.path}"


class _FileSource(_PathSource):
    """A source backed by one file."""

    def _load(self) -> list[CertEntry]:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {self.kind} source {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            loaded = load_certificates(data, password=self.password, source=str(self.path))
        except SmimeError as exc:
            raise ConfigError(f"{self.kind} source unusable: {exc.message}") from exc
        self.notices.extend(loaded.notices)
        return list(loaded)


class PfxSource(_FileSource):
    """A .pfx/.p12 file (its private key is never used for encryption)."""

    kind = "pfx"


class SstSource(_FileSource):
    """A Microsoft serialized certificate store."""

    kind = "sst"


class CerSource(_FileSource):
    """A file holding exactly one certificate (.cer, .crt, .pem)."""

    kind = "cer"

    def _load(self) -> list[CertEntry]:
        entries = super()._load()
        if len(entries) != 1:
            raise ConfigError(
                f"cer source {self.path} must hold exactly one certificate, it holds {len(entries)}"
            )
        return entries


class DirSource(_PathSource):
    """Every certificate file in a folder; unreadable files are skipped (``skipped-file``)."""

    kind = "dir"

    def _load(self) -> list[CertEntry]:
        if not self.path.is_dir():
            raise ConfigError(f"dir source {self.path} is not a folder")
        entries: list[CertEntry] = []
        seen: set[str] = set()
        try:
            files = sorted(p for p in self.path.iterdir() if p.is_file())
        except OSError as exc:
            raise ConfigError(f"cannot list dir source {self.path}: {exc.strerror or exc}") from exc
        for file in files:
            if file.name.startswith("."):
                continue
            try:
                loaded = load_certificates(
                    file.read_bytes(), password=self.password, source=str(file)
                )
            except (OSError, SmimeError) as exc:
                text = f"skipped {file}: {getattr(exc, 'message', None) or exc}"
                self.notices.append(Notice("skipped-file", text))
                continue
            self.notices.extend(loaded.notices)
            for entry in loaded:
                if entry.thumbprint not in seen:
                    seen.add(entry.thumbprint)
                    entries.append(entry)
        return entries

"""Recipient patterns: address normalisation, the linear wildcard matcher and the index
that finds a rule's first match.

Patterns: ``*`` any run of characters, ``?`` one character, whole address,
case-insensitive. Everything else is literal (``[`` included: no fnmatch sets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smimecli.rules.model import Rule


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


def domain_pattern(pattern: str) -> str | None:
    """The folded domain of a ``*@domain`` pattern (no other wildcard), else None."""
    if pattern.startswith("*@") and not is_wildcard(pattern[2:]):
        return fold(pattern[2:])
    return None


class MatchIndex:
    """Which rule first matches an address, without trying every pattern of every rule."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.exact: dict[str, int] = {}
        self.domains: dict[str, int] = {}
        self.others: list[tuple[int, Glob]] = []
        for position, rule in enumerate(self.rules):
            for regex in rule._regexes:
                pattern = regex.pattern
                domain = domain_pattern(pattern)
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

"""``rules check``: patterns no address can reach because an earlier rule catches them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from smimecli.rules.patterns import (
    domain_pattern,
    fold,
    is_wildcard,
    normalize_address,
    pattern_covers,
)

if TYPE_CHECKING:
    from smimecli.rules.model import Rule, RuleSet


# Wildcard pattern pairs compared at most, for one file: the comparison is advisory, and a
# file of many wildcards sharing their fixed parts would otherwise take quadratic time.
MAX_PAIR_CHECKS = 200_000

Shadow = tuple["Rule", str, "Rule", str]


class Shadows(list[Shadow]):
    """The shadowed patterns found; ``complete`` is False when :data:`MAX_PAIR_CHECKS`
    stopped the wildcard comparisons early (some shadowing may be unreported)."""

    complete: bool = True


def _fixed_ends(folded: str) -> tuple[str, str]:
    """The literal text before the first and after the last wildcard (all of an address)."""
    marks = [i for i, c in enumerate(folded) if c in "*?"]
    if not marks:
        return folded, folded
    return folded[: marks[0]], folded[marks[-1] + 1 :]


class _Wildcards:
    """The earlier wildcard patterns, found by their fixed beginning: a pattern can cover a
    later one only if the later one's fixed beginning starts with its own and its fixed end
    ends with its own (a wildcard of the later one cannot be matched by a literal)."""

    def __init__(self) -> None:
        self.by_prefix: dict[str, list[tuple[int, str, str]]] = {}
        self.checks = 0

    def add(self, position: int, normal: str) -> None:
        prefix, suffix = _fixed_ends(fold(normal))
        self.by_prefix.setdefault(prefix, []).append((position, normal, suffix))

    def first_cover(self, normal: str, best: int) -> int:
        """The earliest position below ``best`` whose pattern covers ``normal``."""
        prefix, suffix = _fixed_ends(fold(normal))
        for cut in range(len(prefix) + 1):
            for position, other, other_suffix in self.by_prefix.get(prefix[:cut], ()):
                if position >= best:
                    break
                if not suffix.endswith(other_suffix):
                    continue
                self.checks += 1
                if self.checks > MAX_PAIR_CHECKS:
                    return best
                if pattern_covers(other, normal):
                    best = position
                    break
        return best


def _indexed_cover(key: str, position: int, exact: dict[str, int], domains: dict[str, int]) -> int:
    """The earliest rule before ``position`` whose exact address or ``*@domain`` covers."""
    best = position
    if not is_wildcard(key):
        best = min(best, exact.get(key, best))
    at = key.find("@")
    while at >= 0:
        if not is_wildcard(key[at:]):
            best = min(best, domains.get(key[at + 1 :], best))
        at = key.find("@", at + 1)
    return best


def shadowed_patterns(rules: RuleSet) -> Shadows:
    """Patterns no address can reach because an earlier rule's pattern covers them.

    Exact addresses and ``*@domain`` patterns are indexed in dicts, and the other wildcard
    patterns by their fixed beginning, so a file of thousands of rules is checked in about
    linear time; at most :data:`MAX_PAIR_CHECKS` wildcard pairs are compared.

    Returns:
        (later rule, its pattern, earlier rule, the covering pattern) tuples.
    """
    exact: dict[str, int] = {}
    domains: dict[str, int] = {}
    wildcards = _Wildcards()
    found = Shadows()
    for position, rule in enumerate(rules.rules):
        for pattern in rule.recipients:
            normal = normalize_address(pattern)
            best = _indexed_cover(fold(normal), position, exact, domains)
            best = wildcards.first_cover(normal, best)
            if best < position:
                earlier = rules.rules[best]
                cover = next(
                    p for p in earlier.recipients if pattern_covers(normalize_address(p), normal)
                )
                found.append((rule, pattern, earlier, cover))
        for pattern in rule.recipients:
            normal = normalize_address(pattern)
            domain = domain_pattern(normal)
            if not is_wildcard(normal):
                exact.setdefault(fold(normal), position)
            elif domain is not None:
                domains.setdefault(domain, position)
            else:
                wildcards.add(position, normal)
    found.complete = wildcards.checks <= MAX_PAIR_CHECKS
    return found


def shadow_warnings(
    rules: RuleSet,
    where: Callable[[Rule], str],
    *,
    only: Sequence[Rule] | None = None,
    suffix: str = "",
) -> list[str]:
    """The warning of :func:`shadow_warning` for each shadowed pattern (of the rules in
    ``only``, when given; ``where`` names the rule), and :func:`incomplete_warning` when
    the comparison stopped early."""
    shadows = shadowed_patterns(rules)
    warnings = [
        shadow_warning(where(later), pattern, earlier, cover) + suffix
        for later, pattern, earlier, cover in shadows
        if only is None or later in only
    ]
    if not shadows.complete:
        warnings.append(incomplete_warning())
    return warnings


def incomplete_warning() -> str:
    """The warning when :data:`MAX_PAIR_CHECKS` stopped the comparison of wildcards."""
    return (
        f"the shadowing check stopped after {MAX_PAIR_CHECKS:,} comparisons of wildcard "
        "patterns: some shadowed patterns may not be reported"
    )


def shadow_warning(where: str, pattern: str, earlier: Rule, cover: str) -> str:
    """The warning for a pattern an earlier rule always catches first (``rules check`` and
    ``rules test`` say it the same way, each with its own ``where``)."""
    return (
        f"{where}: pattern {pattern!r} is shadowed by {cover!r} of the earlier rule "
        f"{earlier.name!r}"
    )

"""``rules check``: patterns no address can reach because an earlier rule catches them."""

from __future__ import annotations

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
            domain = domain_pattern(normal)
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

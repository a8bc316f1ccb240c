"""The rules file model: loading, defaults, strict validation, patterns (SPEC section 3)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from smimecli.errors import ConfigError
from smimecli.rules.check import shadow_warning, shadowed_patterns
from smimecli.rules.load import load_rules
from smimecli.rules.model import BUILTIN_DEFAULTS
from smimecli.rules.patterns import (
    example_address,
    normalize_address,
    pattern_covers,
    pattern_regex,
)
from tests.rulesfiles import rules_file

SPEC_EXAMPLE = """
[defaults]                      # optional; every key may be set per rule too
cipher = "aes256"
key_transport = "rsa"           # rsa | rsa-oaep
oaep_hash = "sha256"
convert_tnef = true
on_missing_cert = "pass"        # pass | reject | tempfail
require_trusted = false         # only certificates that chain to the store's root

[[rule]]
name = "alice"
recipients = ["alice@example.com"]
source = { kind = "cer", path = "certs/alice.cer" }
match = "any"                   # use the source's certificate whatever address it names

[[rule]]
name = "partners"
recipients = ["*@partner.example", "j?hn@example.org"]
source = { kind = "store", store = "other" }
match = "email"                 # pick the certificate whose address equals the recipient
cipher = "aes128"
"""


def test_spec_example_loads(tmp_path: Path) -> None:
    rules = load_rules(rules_file(tmp_path, SPEC_EXAMPLE))
    assert [r.name for r in rules.rules] == ["alice", "partners"]
    alice, partners = rules.rules
    assert alice.match == "any" and alice.cipher == "aes256"
    assert alice.source.kind == "cer"
    # Relative paths are relative to the rules file.
    assert alice.source.path == tmp_path / "certs" / "alice.cer"
    assert partners.cipher == "aes128"
    assert partners.source.store == "other"
    assert partners.wildcards == ("*@partner.example", "j?hn@example.org")
    assert alice.line == 10 and partners.line == 16


def test_builtin_defaults(tmp_path: Path) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            """
[[rule]]
name = "r"
recipients = ["a@example.com"]
source = { kind = "store" }
""",
        )
    )
    rule = rules.rules[0]
    for key, value in BUILTIN_DEFAULTS.items():
        assert getattr(rule, key) == value, key
    assert rule.source.store == "other"


def test_defaults_table_applies_and_rules_override(tmp_path: Path) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            """
[defaults]
key_transport = "rsa-oaep"
oaep_hash = "sha512"
on_missing_cert = "reject"
convert_tnef = false

[[rule]]
name = "one"
recipients = ["a@example.com"]
source = { kind = "store" }

[[rule]]
name = "two"
recipients = ["b@example.com"]
source = { kind = "store" }
on_missing_cert = "tempfail"
key_transport = "rsa"
""",
        )
    )
    one, two = rules.rules
    assert (one.key_transport, one.oaep_hash) == ("rsa-oaep", "sha512")
    assert one.on_missing_cert == "reject"
    assert one.convert_tnef is False
    assert (two.key_transport, two.on_missing_cert) == ("rsa", "tempfail")


def test_pfx_source_password_file_relative(tmp_path: Path) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            """
[[rule]]
name = "p"
recipients = ["a@example.com"]
source = { kind = "pfx", path = "a.pfx", password_file = "secret/pw", \
thumbprint = "ab:cd:ef:01 23 45 67 89" }
match = "any"
""",
        )
    )
    source = rules.rules[0].source
    assert source.password_file == tmp_path / "secret" / "pw"
    assert source.thumbprint == "ABCDEF0123456789"


# --- patterns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "address", "expected"),
    [
        ("alice@example.com", "alice@example.com", True),
        ("alice@example.com", "ALICE@Example.COM", True),  # case-insensitive
        ("alice@example.com", "malice@example.com", False),  # whole address
        ("alice@example.com", "alice@example.com.evil", False),
        ("*@partner.example", "anyone@partner.example", True),
        ("*@partner.example", "x@sub.partner.example", False),
        ("*@partner.example", "@partner.example", True),  # * may be empty
        ("*@*.partner.example", "x@sub.partner.example", True),
        ("j?hn@example.org", "john@example.org", True),
        ("j?hn@example.org", "jahn@EXAMPLE.org", True),
        ("j?hn@example.org", "jhn@example.org", False),  # ? is exactly one character
        ("j?hn@example.org", "joohn@example.org", False),
        ("a.b@example.com", "aXb@example.com", False),  # . is literal
        ("a+b@example.com", "a+b@example.com", True),
        ("[ab]@example.com", "a@example.com", False),  # no fnmatch sets
        ("[ab]@example.com", "[ab]@example.com", True),
        ("*", "whoever@wherever", True),
    ],
)
def test_pattern_semantics(pattern: str, address: str, expected: bool) -> None:
    assert (pattern_regex(pattern).fullmatch(address) is not None) is expected


@pytest.mark.parametrize(
    ("earlier", "later", "covers"),
    [
        ("*@example.com", "j?hn@example.com", True),
        ("*@example.com", "alice@example.com", True),
        ("*", "*@partner.example", True),
        ("ALICE@example.com", "alice@EXAMPLE.com", True),
        ("j?hn@example.com", "john@example.com", True),
        ("j?hn@example.com", "j?hn@example.com", True),
        ("j?hn@example.com", "j*hn@example.com", False),  # * may be many characters
        ("alice@example.com", "*@example.com", False),
        ("*@example.com", "*@example.org", False),
    ],
)
def test_pattern_covers(earlier: str, later: str, covers: bool) -> None:
    assert pattern_covers(earlier, later) is covers


@pytest.mark.parametrize("pattern", ["*@partner.example", "j?hn@example.org", "*", "*@*"])
def test_example_address_matches_its_pattern(pattern: str) -> None:
    example = example_address(pattern)
    assert pattern_regex(pattern).fullmatch(example)
    assert "@" in example


def test_first_match_in_file_order(tmp_path: Path) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            """
[[rule]]
name = "exact"
recipients = ["boss@example.com"]
source = { kind = "store" }

[[rule]]
name = "domain"
recipients = ["*@example.com"]
source = { kind = "store" }

[[rule]]
name = "late"
recipients = ["boss@example.com", "x@example.org"]
source = { kind = "store" }
""",
        )
    )
    boss, clerk, late = (
        rules.first_match(a) for a in ("BOSS@example.com", "clerk@example.com", "x@example.org")
    )
    assert boss is not None and boss.name == "exact"
    assert clerk is not None and clerk.name == "domain"
    assert late is not None and late.name == "late"
    assert rules.first_match("x@example.net") is None
    shadowed = [
        (later.name, pattern, earlier.name)
        for later, pattern, earlier, _ in shadowed_patterns(rules)
    ]
    assert shadowed == [("late", "boss@example.com", "exact")]
    later, pattern, earlier, cover = shadowed_patterns(rules)[0]
    assert shadow_warning(rules.where(later, "recipients"), pattern, earlier, cover) == (
        f"{rules.path}:{later.line}: rule 'late', key 'recipients': pattern "
        "'boss@example.com' is shadowed by 'boss@example.com' of the earlier rule 'exact'"
    )


# --- validation errors (each: ConfigError naming file, rule and key) -------------------------

RULE = """
[[rule]]
name = "r1"
recipients = ["a@example.com"]
source = { kind = "store" }
"""

BAD = {
    "unknown rule key": (RULE + 'colour = "red"\n', "r1", "colour"),
    "unknown source key": (
        RULE.replace('{ kind = "store" }', '{ kind = "store", folder = "x" }'),
        "r1",
        "source.folder",
    ),
    "unknown defaults key": ('[defaults]\nciphers = "aes256"\n' + RULE, "[defaults]", "ciphers"),
    "unknown top-level key": ("rulez = 1\n" + RULE, None, "rulez"),
    "missing name": (RULE.replace('name = "r1"\n', ""), "rule #1", "name"),
    "missing recipients": (
        RULE.replace('recipients = ["a@example.com"]\n', ""),
        "r1",
        "recipients",
    ),
    "missing source": (RULE.replace('source = { kind = "store" }\n', ""), "r1", "source"),
    "recipients not a list": (
        RULE.replace('["a@example.com"]', '"a@example.com"'),
        "r1",
        "recipients",
    ),
    "recipients empty": (RULE.replace('["a@example.com"]', "[]"), "r1", "recipients"),
    "recipient not a string": (RULE.replace('["a@example.com"]', "[1]"), "r1", "recipients"),
    "two addresses in one string": (
        RULE.replace('["a@example.com"]', '["a@example.com, b@example.com"]'),
        "r1",
        "recipients",
    ),
    "name not a string": (RULE.replace('"r1"', "7"), "rule #1", "name"),
    "bool as string": (RULE + 'convert_tnef = "yes"\n', "r1", "convert_tnef"),
    "string as bool": (RULE + "cipher = true\n", "r1", "cipher"),
    "bad key transport": (RULE + 'key_transport = "rsa-pss"\n', "r1", "key_transport"),
    "bad oaep hash": (RULE + 'oaep_hash = "md5"\n', "r1", "oaep_hash"),
    "bad policy": (RULE + 'on_missing_cert = "drop"\n', "r1", "on_missing_cert"),
    "bad match": (RULE + 'match = "subject"\n', "r1", "match"),
    "bad source kind": (RULE.replace('kind = "store"', 'kind = "ldap"'), "r1", "source.kind"),
    "missing source kind": (RULE.replace('kind = "store"', 'store = "other"'), "r1", "source.kind"),
    "source not a table": (RULE.replace('{ kind = "store" }', '"store"'), "r1", "source"),
    "bad store name": (
        RULE.replace('kind = "store"', 'kind = "store", store = "trash"'),
        "r1",
        "source.store",
    ),
    "file source without path": (
        RULE.replace('kind = "store"', 'kind = "cer"'),
        "r1",
        "source.path",
    ),
    "path on a store source": (
        RULE.replace('kind = "store"', 'kind = "store", path = "x.cer"'),
        "r1",
        "source.path",
    ),
    "password on a cer source": (
        RULE.replace('kind = "store"', 'kind = "cer", path = "x", password_env = "P"'),
        "r1",
        "source.password_env",
    ),
    "two password sources": (
        RULE.replace(
            'kind = "store"', 'kind = "pfx", path = "x", password_env = "P", password_file = "f"'
        ),
        "r1",
        "source.password_file",
    ),
    "bad thumbprint": (
        RULE.replace('kind = "store"', 'kind = "store", thumbprint = "xyz"'),
        "r1",
        "source.thumbprint",
    ),
    "empty path": (RULE.replace('kind = "store"', 'kind = "cer", path = ""'), "r1", "source.path"),
    "match any with wildcard": (
        RULE.replace('["a@example.com"]', '["*@example.com"]') + 'match = "any"\n',
        "r1",
        "match",
    ),
    "duplicate names": (RULE + RULE, "r1", "name"),
    "no rules": ('[defaults]\ncipher = "aes256"\n', None, "rule"),
    "rule not a table array": ('rule = "x"\n', None, "rule"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validation_errors_name_file_rule_and_key(tmp_path: Path, case: str) -> None:
    text, rule, key = BAD[case]
    path = rules_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    message = info.value.message
    assert message.startswith(str(path)), message
    if rule is not None:
        assert rule in message, message
    assert f"'{key}'" in message or f"key {key!r}" in message, message
    assert "\n" not in message


def test_unknown_cipher(tmp_path: Path) -> None:
    path = rules_file(tmp_path, RULE + 'cipher = "aes512"\n')
    with pytest.raises(ConfigError, match=r"rule 'r1', key 'cipher': unknown cipher 'aes512'"):
        load_rules(path)


@pytest.mark.parametrize(
    "cipher",
    [
        "aes128",
        "aes192",
        "aes256",
        "3des",
        "rc2-128",
        "rc2-64",
        "rc2-40",
        "aes128-gcm",
        "aes256-gcm",
    ],
)
def test_every_spec_cipher_is_accepted(tmp_path: Path, cipher: str) -> None:
    rules = load_rules(rules_file(tmp_path, RULE + f'cipher = "{cipher}"\n'))
    assert rules.rules[0].cipher == cipher


def test_error_carries_line_of_the_key(tmp_path: Path) -> None:
    path = rules_file(tmp_path, "\n" + RULE + "\n" + 'key_transport = "nope"\n')
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert info.value.message.startswith(f"{path}:8:"), info.value.message


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    path = rules_file(tmp_path, RULE + 'cipher = "aes256\n')
    with pytest.raises(ConfigError, match=r"TOML syntax error.*line 6"):
        load_rules(path)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.toml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(b'[[rule]]\nname = "\xff"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_rules(path)


def test_hostile_nesting(tmp_path: Path) -> None:
    path = rules_file(tmp_path, "x = " + "[" * 100000 + "]" * 100000 + "\n")
    with pytest.raises(ConfigError):
        load_rules(path)


# --- linear matching, normal forms, many rules -------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["*@*.partner.example", "*a*b*c*@example.com", "*?*?*?*x", "a*a*a*a*a*a*a*a*b"],
)
def test_wildcards_match_in_linear_time(pattern: str) -> None:
    """A regex backtracked for 31 s on the first pattern and a 180 KB address."""
    started = time.monotonic()
    for address in ("a" * 180_000, "a" * 90_000 + "@" + "b." * 45_000):
        assert pattern_regex(pattern).fullmatch(address) is None
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("pattern", "address", "expected"),
    [
        ("*a*b", "xaxxbxb", True),
        ("*a*b", "xaxxbxc", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "acb", False),
        ("*", "", True),
        ("?*", "", False),
        ("Ä*@Example.COM", "äbc@example.com", True),
    ],
)
def test_glob_backtracks_correctly(pattern: str, address: str, expected: bool) -> None:
    assert (pattern_regex(pattern).fullmatch(address) is not None) is expected


@pytest.mark.parametrize(
    ("address", "normal"),
    [
        ("bob@partner.example.", "bob@partner.example"),
        (" <Bob@PARTNER.Example> ", "Bob@partner.example"),
        ("bob@bücher.example", "bob@xn--bcher-kva.example"),
        ("bob@BÜCHER.example.", "bob@xn--bcher-kva.example"),
        ("*@*.bücher.example", "*@*.xn--bcher-kva.example"),
        ("no-at-sign", "no-at-sign"),
    ],
)
def test_normalize_address(address: str, normal: str) -> None:
    assert normalize_address(address) == normal


def test_first_match_keeps_file_order_with_the_index(tmp_path: Path) -> None:
    rules = load_rules(
        rules_file(
            tmp_path,
            """
[[rule]]
name = "wild"
recipients = ["b?b@*.example"]
source = { kind = "store" }

[[rule]]
name = "domain"
recipients = ["*@a.example"]
source = { kind = "store" }

[[rule]]
name = "exact"
recipients = ["bob@a.example", "carol@a.example", "dave@b.example"]
source = { kind = "store" }

[[rule]]
name = "all"
recipients = ["*"]
source = { kind = "store" }
""",
        )
    )
    names = {
        a: getattr(rules.first_match(a), "name", None)
        for a in ("BOB@a.example.", "carol@A.example", "dave@b.example", "x@y", "bab@b.example")
    }
    assert names == {
        "BOB@a.example.": "wild",
        "carol@A.example": "domain",
        "dave@b.example": "exact",
        "x@y": "all",
        "bab@b.example": "wild",
    }


def test_shadow_check_of_thousands_of_rules_is_fast(tmp_path: Path) -> None:
    """1,600 rules took 32 s with pairwise regex checks."""
    blocks = [
        '[[rule]]\nname = "catch"\nrecipients = ["*@caught.example"]\nsource = { kind = "store" }'
    ]
    for n in range(2000):
        blocks.append(
            f'[[rule]]\nname = "r{n}"\nrecipients = ["user{n}@d{n % 300}.example", '
            f'"*@x{n}.example"]\nsource = {{ kind = "store" }}'
        )
    for n in range(50):
        blocks.append(
            f'[[rule]]\nname = "w{n}"\nrecipients = ["*.{n}@*.example"]\n'
            'source = { kind = "store" }'
        )
    blocks.append(
        '[[rule]]\nname = "late"\nrecipients = ["USER7@D7.example.", "x@caught.example", '
        '"*@x9.example", "a.3@b.example"]\nsource = { kind = "store" }'
    )
    path = rules_file(tmp_path, "\n\n".join(blocks) + "\n")
    started = time.monotonic()
    rules = load_rules(path)
    found = shadowed_patterns(rules)
    match = rules.first_match("user1999@d199.example")
    assert match is not None and match.name == "r1999"
    assert rules.first_match("nobody@nowhere.example") is None
    elapsed = time.monotonic() - started
    assert [
        (later.name, pattern, earlier.name, cover) for later, pattern, earlier, cover in found
    ] == [
        ("late", "USER7@D7.example.", "r7", "user7@d7.example"),
        ("late", "x@caught.example", "catch", "*@caught.example"),
        ("late", "*@x9.example", "r9", "*@x9.example"),
        ("late", "a.3@b.example", "w3", "*.3@*.example"),
    ]
    assert elapsed < 5, f"{elapsed:.1f} s"


def test_many_wildcards_sharing_their_fixed_ends_are_compared_within_a_budget(
    tmp_path: Path,
) -> None:
    # 3,000 patterns "*x{n}y*@*.example": none covers another, and each pair has the same
    # fixed beginning and end, so every pair would be compared (17 s before the budget).
    import time

    from smimecli.rules.check import MAX_PAIR_CHECKS, incomplete_warning

    body = "".join(
        f'[[rule]]\nname = "r{n}"\nrecipients = ["*x{n}y*@*.example"]\n'
        'source = { kind = "dir", path = "." }\n\n'
        for n in range(3000)
    )
    path = tmp_path / "rules.toml"
    path.write_text(body)
    rules = load_rules(path)
    started = time.monotonic()
    shadows = shadowed_patterns(rules)
    assert time.monotonic() - started < 10
    assert list(shadows) == [] and not shadows.complete
    assert f"{MAX_PAIR_CHECKS:,}" in incomplete_warning()


def test_fixed_ends_prune_without_missing_a_cover(tmp_path: Path) -> None:
    body = "".join(
        f'[[rule]]\nname = "r{n}"\nrecipients = ["{pattern}"]\n'
        'source = { kind = "dir", path = "." }\n\n'
        for n, pattern in enumerate(
            ["user1*@*.d1.example", "user10*@*.d10.example", "user1?*@*.d1.example", "a?c@x"]
        )
    )
    path = tmp_path / "rules.toml"
    path.write_text(body)
    shadows = shadowed_patterns(load_rules(path))
    assert [(later.name, earlier.name) for later, _, earlier, _ in shadows] == [("r2", "r0")]
    assert shadows.complete

"""Hypothesis strategies that damage real inputs the way hostile or broken senders do.

Each fuzz test starts from valid files built in the test (CMS from EnvelopeBuilder, .sst,
.p12, PEM, MIME, TNEF) and applies a few mutations: flipped bytes, truncation, spliced
garbage, deleted or repeated runs, and length fields set to absurd values (0xFFFFFFFF,
the DER long form 0x84FFFFFFFF, BER indefinite 0x80). Plain random bytes are mixed in.

The examples per test default to a CI-friendly number; ``SMIMECLI_FUZZ_EXAMPLES`` raises it
for a long run (see tools/fuzz_long.py) and ``SMIMECLI_FUZZ_DEADLINE_MS`` sets the
per-example deadline (0 turns it off).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from smimecli.errors import SmimeError

# Length encodings that announce far more data than any file holds.
ABSURD_LENGTHS = (
    b"\x84\xff\xff\xff\xff",  # DER long form: 4 GiB
    b"\x88\xff\xff\xff\xff\xff\xff\xff\xff",  # DER long form, 8 length octets
    b"\xff\xff\xff\xff",  # a 32-bit little/big-endian length field (TNEF, .sst)
    b"\x80",  # BER indefinite length
    b"\x00\x00\x00\x00",
    b"\x8f" + b"\xff" * 15,  # more length octets than any reader accepts
)

RECORDED: dict[str, int] = {}


def examples(default: int) -> int:
    """The max_examples for one fuzz test: ``default`` unless SMIMECLI_FUZZ_EXAMPLES is set."""
    raised = os.environ.get("SMIMECLI_FUZZ_EXAMPLES")
    return int(raised) if raised else default


def fuzz_settings(default_examples: int, deadline_ms: int = 500) -> settings:
    """Settings shared by the fuzz tests: bounded examples and a per-example deadline."""
    env_deadline = os.environ.get("SMIMECLI_FUZZ_DEADLINE_MS")
    if env_deadline is not None:
        deadline_ms = int(env_deadline)
    return settings(
        max_examples=examples(default_examples),
        deadline=timedelta(milliseconds=deadline_ms) if deadline_ms else None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
        # CI runs the same examples every time (a red build is reproducible); a long run
        # (SMIMECLI_FUZZ_EXAMPLES) explores new ones.
        derandomize=not os.environ.get("SMIMECLI_FUZZ_EXAMPLES"),
    )


@st.composite
def _mutation(draw: st.DrawFn, size: int) -> tuple[str, int, bytes]:
    kind = draw(
        st.sampled_from(["flip", "truncate", "splice", "delete", "repeat", "length", "byte"])
    )
    position = draw(st.integers(0, max(size - 1, 0)))
    if kind == "flip":
        return kind, position, bytes([draw(st.integers(1, 255))])
    if kind == "splice":
        return kind, position, draw(st.binary(min_size=1, max_size=64))
    if kind == "length":
        return kind, position, draw(st.sampled_from(ABSURD_LENGTHS))
    if kind == "byte":
        return kind, position, bytes([draw(st.sampled_from([0x00, 0x30, 0x80, 0xA0, 0xFF]))])
    if kind in ("delete", "repeat"):
        return kind, position, draw(st.integers(1, 256)).to_bytes(2, "big")
    return kind, position, b""


def apply(data: bytes, mutation: tuple[str, int, bytes]) -> bytes:
    """Apply one mutation drawn by :func:`mutated` to ``data``."""
    kind, position, arg = mutation
    position = min(position, len(data))
    if kind == "flip":
        if not data:
            return data
        position = min(position, len(data) - 1)
        return data[:position] + bytes([data[position] ^ arg[0]]) + data[position + 1 :]
    if kind == "truncate":
        return data[:position]
    if kind == "splice":
        return data[:position] + arg + data[position:]
    if kind in ("length", "byte"):
        return data[:position] + arg + data[position + len(arg) :]
    if kind == "delete":
        return data[:position] + data[position + int.from_bytes(arg, "big") :]
    # repeat: a run duplicated in place (nesting, repeated headers or elements)
    run = data[position : position + int.from_bytes(arg, "big")]
    return data[:position] + run * 3 + data[position:]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], *, max_mutations: int = 4) -> bytes:
    """One of ``seeds`` with 1..max_mutations mutations, or (1 in 8) random bytes."""
    if draw(st.integers(0, 7)) == 0:
        return draw(st.binary(max_size=2048))
    data = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, max_mutations))):
        data = apply(data, draw(_mutation(len(data))))
    return data


def nested(prefix: bytes, depth: int) -> bytes:
    """``depth`` DER constructed headers with indefinite length: deep nesting."""
    return prefix + b"\x30\x80" * depth + b"\x00\x00" * depth


@contextlib.contextmanager
def quiet_library() -> Iterator[None]:
    """Silence the library's warnings while fuzzing (they are expected on damaged input)."""
    logger = logging.getLogger("smimecli")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL)
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.propagate = propagate


def only_smime_errors(call: Callable[[], Any]) -> str:
    """Run ``call``; a clean result gives "ok", a SmimeError its class name; anything else
    (the bug a fuzzer looks for) propagates and fails the test."""
    try:
        call()
    except SmimeError as exc:
        assert exc.message, repr(exc)
        # One line per problem: only a file with several problems (rules) has several.
        lines = exc.message.split("\n")
        assert all(line.strip() for line in lines), f"empty line: {exc.message!r}"
        assert len(lines) == 1 or exc.status == 78, f"not one line: {exc.message!r}"
        assert int(exc.status) in (64, 65, 66, 67, 73, 74, 75, 77, 78), exc.status
        return type(exc).__name__
    return "ok"


def record(name: str, outcomes: dict[str, int]) -> None:
    """Print how many examples a fuzz test ran and how they ended (seen with ``-s``)."""
    total = sum(outcomes.values())
    RECORDED[name] = total
    print(f"\nfuzz {name}: {total} examples, outcomes {dict(sorted(outcomes.items()))}")

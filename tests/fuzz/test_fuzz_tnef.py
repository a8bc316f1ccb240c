"""Fuzzing winmail.dat conversion (SPEC section 4): a damaged TNEF part must stay in the
message unchanged with a warning; conversion never raises, hangs or loses the message."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from smimecli.tnef.reader import TnefFormatError, parse_tnef
from smimecli.tnef.splice import convert_message
from tests.conftest import interop_dir
from tests.fuzz.mutate import fuzz_settings, mutated, only_smime_errors, quiet_library, record
from tests.unit.test_tnef import PT_UNICODE, attachment, mapi, tnef, wrap


def _streams() -> list[bytes]:
    seeds = [
        tnef(
            mapi((PT_UNICODE, 0x1000, "plain body")),
            [attachment("report.pdf", b"%PDF-1.4 fuzz", mime="application/pdf")],
        ),
        tnef(
            b"", [attachment("a.txt", b"aaa"), attachment("b.bin", b"\0" * 40, legacy_data=False)]
        ),
    ]
    corpus = interop_dir()
    if corpus is not None:  # the tnefparse examples (real Outlook output), small ones only
        for path in sorted((corpus / "tnefparse").rglob("*.tnef")):
            if path.stat().st_size < 32 << 10:
                seeds.append(path.read_bytes())
    return seeds


def test_damaged_tnef_stream_is_kept() -> None:
    """A damaged winmail.dat inside a good message: converted, or kept with a warning."""
    streams, outcomes = _streams(), Counter[str]()

    @fuzz_settings(250)
    @given(mutated(streams), st.sampled_from([b"\r\n", b"\n"]))
    def run(stream: bytes, eol: bytes) -> None:
        message = wrap(stream, eol=eol)
        result = convert_message(message)
        if result.converted:
            outcomes["converted"] += 1
        else:
            assert result.data == message  # kept byte for byte: nothing lost
            outcomes["kept"] += 1
        try:
            parse_tnef(stream)
        except TnefFormatError:  # the parser's own signal, caught by convert_message
            outcomes["parse-refused"] += 1

    with quiet_library():
        run()
    record("tnef-stream", outcomes)
    assert outcomes["kept"] + outcomes["converted"] >= 50


def test_damaged_tnef_message() -> None:
    """Damage anywhere in the message (MIME structure, base64, the stream) never raises."""
    messages = [wrap(stream) for stream in _streams()[:4]]
    outcomes = Counter[str]()

    @fuzz_settings(200)
    @given(mutated(messages))
    def run(message: bytes) -> None:
        outcomes[only_smime_errors(lambda: convert_message(message))] += 1

    with quiet_library():
        run()
    record("tnef-message", outcomes)
    assert sum(outcomes.values()) >= 50

"""Fuzzing the ER7 parser, the MLLP frame reader and the mapping with generated and
mutated input. The contract: ``parse`` returns a message or raises ``ParseError``;
``FrameReader`` never raises and never holds more than its limit; ``map_message`` returns a
result or raises an ``InboundError`` (answered AE/AR); the ingest answers every message
with an ACK, whatever it holds. ``make fuzz`` runs these with many more examples."""

from __future__ import annotations

from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters.loader import Network, load_network
from gateway.errors import InboundError, ParseError
from gateway.hl7.mllp import END, VT, FrameReader, Oversize, wrap
from gateway.hl7.parser import Message, parse
from gateway.mapping import map_message
from tests.fuzz.mutations import Mutant, mutated_messages

KEY = b"fuzz-pseudonym-key-0123456789abcd"
# text that looks like ER7: delimiters, escapes, segment names, line ends
ER7ISH = st.text(alphabet=st.sampled_from(list("MSHPIDOBXR|^~\\&\r\n0123456789.#é \x00")),
                 max_size=300)


@cache
def network() -> Network:
    return load_network()


def parse_or_reject(data: bytes | str) -> Message | None:
    try:
        return parse(data)
    except ParseError:
        return None


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    parse_or_reject(data)


@given(ER7ISH)
def test_er7_like_text_with_an_msh_parses_or_raises_parse_error(body: str) -> None:
    msg = parse_or_reject("MSH|^~\\&|" + body)
    if msg is not None:
        assert msg.segments[0].name == "MSH"


@given(mutated_messages())
def test_a_mutated_corpus_message_maps_or_raises_an_inbound_error(mutant: Mutant) -> None:
    msg = parse_or_reject(mutant.text)
    if msg is None:
        return
    site = network().site_for(msg.sending_facility)
    if site is None:
        return
    try:
        result = map_message(msg, site, pseudonym_key=KEY, received="2026-12-01T10:00:00Z",
                             studies=network().studies)
    except InboundError as exc:
        assert exc.ack_code in ("AE", "AR")
        return
    assert result.resources[-1]["resourceType"] == "Provenance"


MESSAGE = st.binary(max_size=200).map(lambda b: b.replace(VT, b"").replace(b"\x1c", b""))


@given(st.lists(MESSAGE, max_size=6), st.lists(st.integers(1, 64), min_size=1, max_size=40),
       st.binary(max_size=8).map(lambda b: b.replace(VT, b"")))
def test_frames_come_out_whole_however_the_stream_is_cut(
        messages: list[bytes], cuts: list[int], junk: bytes) -> None:
    stream = b"".join(junk + wrap(m) for m in messages)
    reader, frames, pos, i = FrameReader(max_message_size=150), [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        frames += reader.feed(stream[pos:pos + step])
        pos, i = pos + step, i + 1
        assert reader.buffered <= 150 + 64
    expected = [m if len(m) <= 150 else None for m in messages]
    assert [None if isinstance(f, Oversize) else f for f in frames] == expected


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_byte_stream_never_breaks_the_frame_reader(chunks: list[bytes]) -> None:
    reader = FrameReader(max_message_size=100)
    for chunk in chunks:
        for frame in reader.feed(chunk):
            assert isinstance(frame, Oversize) or END not in frame
        assert reader.buffered <= 100 + 300


def test_encoding_characters_that_are_letters_are_refused_at_msh_2() -> None:
    """Found by the fuzzer: MSH-2 "AAAA" was accepted, and the ACK written in those
    delimiters split MSA-1 "AR" at its "A"."""
    try:
        parse("MSH|AAAA|LAB|HPG23|GW|NET|2026||ORU^R01|C1|P|2.5.1\rPID|1\r")
    except ParseError as exc:
        assert (exc.err_code, str(exc.location)) == ("102", "MSH-2")
    else:
        raise AssertionError("MSH-2 of letters was accepted")

"""Framing cases fed straight into the MLLP FrameReader (no sockets)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.hl7.mllp import HEAD_SIZE, FrameReader, Oversize, wrap

MSG = b"MSH|^~\\&|LAB|HPG23|GW|NET|20260101||ORU^R01^ORU_R01|1|P|2.5.1\rPID|1\r"


def feed_all(reader: FrameReader, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    return out


def test_a_whole_block_in_one_read_gives_the_message_without_its_envelope() -> None:
    assert FrameReader().feed(wrap(MSG)) == [MSG]


def test_a_block_split_byte_by_byte_gives_the_same_message() -> None:
    data = wrap(MSG)
    assert feed_all(FrameReader(), [data[i:i + 1] for i in range(len(data))]) == [MSG]


def test_fs_at_the_end_of_one_read_and_cr_at_the_start_of_the_next_ends_the_block() -> None:
    reader = FrameReader()
    assert reader.feed(b"\x0b" + MSG + b"\x1c") == []
    assert reader.in_frame
    assert reader.feed(b"\r") == [MSG]
    assert not reader.in_frame


def test_several_blocks_in_one_read_come_out_in_order() -> None:
    msgs = [MSG.replace(b"|1|P", f"|{i}|P".encode()) for i in range(5)]
    assert FrameReader().feed(b"".join(wrap(m) for m in msgs)) == msgs


def test_bytes_outside_blocks_are_skipped_and_counted() -> None:
    reader = FrameReader()
    frames = reader.feed(b"noise" + wrap(MSG) + b"\r\n" + wrap(b"MSH|x") + b"\n")
    assert frames == [MSG, b"MSH|x"]
    assert reader.junk_bytes == 5 + 2 + 1


def test_an_empty_block_is_reported_as_an_empty_message() -> None:
    assert FrameReader().feed(b"\x0b\x1c\r" + wrap(MSG)) == [b"", MSG]


def test_a_lone_fs_without_cr_is_content_not_the_end_of_the_block() -> None:
    reader = FrameReader()
    assert reader.feed(b"\x0bab\x1ccd\x1c\r") == [b"ab\x1ccd"]


def test_a_truncated_block_gives_nothing_and_stays_open() -> None:
    reader = FrameReader()
    assert reader.feed(b"\x0b" + MSG[:20]) == []
    assert reader.in_frame


def test_an_oversized_block_becomes_an_oversize_event_with_its_head() -> None:
    reader = FrameReader(max_message_size=10_000)
    big = MSG + b"OBX|" + b"x" * 50_000 + b"\r"
    frames = feed_all(reader, [wrap(big)[i:i + 3000] for i in range(0, len(big) + 3, 3000)])
    assert len(frames) == 1 and isinstance(frames[0], Oversize)
    assert frames[0].head == big[:HEAD_SIZE]
    assert frames[0].size == len(big)


def test_the_block_after_an_oversized_one_is_read_normally() -> None:
    reader = FrameReader(max_message_size=100)
    frames = reader.feed(wrap(b"y" * 500) + wrap(MSG[:90]))
    assert isinstance(frames[0], Oversize) and frames[1] == MSG[:90]


def test_an_oversized_block_whose_fs_ends_a_read_is_still_closed_by_the_next_cr() -> None:
    reader = FrameReader(max_message_size=10)
    assert reader.feed(b"\x0b" + b"z" * 50 + b"\x1c") == []
    frames = reader.feed(b"\r" + wrap(b"ok"))
    assert frames == [Oversize(b"z" * 50, 50), b"ok"]


@given(st.lists(st.binary(min_size=0, max_size=300).filter(
           lambda b: b"\x0b" not in b and b"\x1c\r" not in b), min_size=1, max_size=6),
       st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=8))
def test_any_messages_cut_at_any_points_come_back_unchanged(
        messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(wrap(m) for m in messages)
    chunks, pos, i = [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        chunks.append(stream[pos:pos + step])
        pos, i = pos + step, i + 1
    reader = FrameReader()
    assert feed_all(reader, chunks) == messages
    assert reader.junk_bytes == 0 and not reader.in_frame

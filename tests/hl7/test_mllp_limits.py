"""Issue 15, hostile MLLP peers: a connection cap, a deadline for an unfinished block
(slowloris), and a bounded buffer per connection. Real sockets against ``MllpServer``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from gateway.hl7.mllp import READ_SIZE, VT, FrameReader, MllpClient, MllpServer, Oversize, wrap
from tests.hl7.test_mllp_server import EchoHandler, msg


@pytest.fixture
async def limited() -> AsyncIterator[MllpServer]:
    srv = MllpServer(EchoHandler(), "127.0.0.1", 0, max_message_size=64 * 1024,
                     idle_timeout=5, max_connections=2, frame_timeout=0.4)
    await srv.start()
    yield srv
    await srv.close(grace=1)


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    async with asyncio.timeout(seconds):
        return await reader.read(100) == b""


async def test_a_connection_beyond_the_maximum_is_closed_at_once_and_logged(
        limited: MllpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.hl7.mllp")
    first = await MllpClient.connect("127.0.0.1", limited.port, timeout=5)
    second = await MllpClient.connect("127.0.0.1", limited.port, timeout=5)
    assert await first.send(msg("C1")) == [b"ACK C1"]  # both are registered by now
    assert await second.send(msg("C2")) == [b"ACK C2"]
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.port)
    assert await _eof_within(reader, 2)
    writer.close()
    assert limited.stats.refused == 1
    assert "refused" in caplog.text and "--mllp-max-connections" in caplog.text
    assert await first.send(msg("C3")) == [b"ACK C3"]  # the open ones are untouched
    await first.close()
    for _ in range(50):  # the server notices the close, and has room again
        if limited.stats.active < 2:
            break
        await asyncio.sleep(0.02)
    async with await MllpClient.connect("127.0.0.1", limited.port, timeout=5) as third:
        assert await third.send(msg("C4")) == [b"ACK C4"]
    await second.close()


async def test_a_block_trickled_byte_by_byte_is_cut_off_at_the_frame_timeout(
        limited: MllpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.hl7.mllp")
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.port)
    start = time.perf_counter()
    writer.write(VT)
    closed = False
    for byte in msg("SLOWLORIS"):  # one byte every 50 ms: never idle, never finished
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        await asyncio.sleep(0.05)
        if reader.at_eof() or time.perf_counter() - start > 3:
            break
    closed = closed or await _eof_within(reader, 2)
    writer.close()
    assert closed and time.perf_counter() - start < 2.5
    assert limited.stats.frame_timeouts == 1
    assert "unfinished" in caplog.text and "SLOWLORIS" not in caplog.text


async def test_frames_that_each_end_in_time_keep_a_connection_open_past_the_frame_timeout(
        limited: MllpServer) -> None:
    async with await MllpClient.connect("127.0.0.1", limited.port, timeout=5) as client:
        for n in range(4):  # 4 × 0.2 s > frame_timeout 0.4 s, each block itself quick
            assert await client.send(msg(f"K{n}")) == [f"ACK K{n}".encode()]
            await asyncio.sleep(0.2)
    assert limited.stats.frame_timeouts == 0


def test_an_endless_block_never_holds_more_than_the_limit_plus_one_read() -> None:
    reader = FrameReader(max_message_size=256 * 1024)
    reader.feed(VT + msg("ENDLESS"))
    chunk = b"x" * READ_SIZE
    peak = 0
    for _ in range(800):  # 50 MiB into one block
        assert reader.feed(chunk) == []
        peak = max(peak, reader.buffered)
    assert peak <= 256 * 1024 + READ_SIZE
    [frame] = reader.feed(wrap(b"")[1:])  # <FS><CR> ends it
    assert isinstance(frame, Oversize) and frame.size > 50 * 2**20
    assert b"ENDLESS" in frame.head and reader.buffered == 0


async def test_a_flood_of_idle_connections_is_held_to_the_cap_with_few_log_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.hl7.mllp")
    srv = MllpServer(EchoHandler(), "127.0.0.1", 0, idle_timeout=30, max_connections=20)
    await srv.start()
    opened = []
    try:
        for _ in range(200):  # idle: connect and send nothing
            opened.append(await asyncio.open_connection("127.0.0.1", srv.port))
        for _ in range(100):
            if srv.stats.active + srv.stats.refused >= 200:
                break
            await asyncio.sleep(0.02)
        assert srv.stats.active == 20 and srv.stats.refused == 180
        assert caplog.text.count("refused") <= 3  # at most one line a second
    finally:
        for _, writer in opened:
            writer.close()
        await srv.close(grace=1)

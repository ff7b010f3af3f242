"""Real-socket tests of MllpServer and MllpClient with a small fake handler."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.hl7.mllp import (
    MllpClient,
    MllpServer,
    Peer,
    client_ssl_context,
    send_messages,
    server_ssl_context,
    wrap,
)


def msg(control_id: str, extra: str = "") -> bytes:
    return (f"MSH|^~\\&|LAB|HPG23|GW|NET|20260101||ORU^R01^ORU_R01|{control_id}|P|2.5.1"
            f"{extra}\rPID|1\r").encode()


class EchoHandler:
    """Answers ``ACK <MSH-10>``; ``SLOW`` sleeps first, ``BOOM`` raises, ``TWO`` answers twice."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[bytes] = []
        self.peers: list[Peer] = []
        self.heads: list[bytes] = []

    async def handle(self, frame: bytes, peer: Peer) -> list[bytes]:
        self.peers.append(peer)
        cid = frame.split(b"|")[9] if frame.count(b"|") > 9 else b""
        if b"BOOM" in cid:
            raise RuntimeError("handler bug")
        if b"SLOW" in cid or self.delay:
            await asyncio.sleep(self.delay or 0.3)
        self.seen.append(cid)
        if b"TWO" in cid:
            return [b"MSA|CA|" + cid, b"MSA|AA|" + cid]
        return [b"ACK " + cid]

    def oversize(self, head: bytes, peer: Peer) -> list[bytes]:
        self.heads.append(head)
        return [b"AR oversize " + head.split(b"|")[9]]


@pytest.fixture
async def server() -> AsyncIterator[tuple[MllpServer, EchoHandler]]:
    handler = EchoHandler()
    srv = MllpServer(handler, "127.0.0.1", 0, max_message_size=64 * 1024, idle_timeout=5)
    await srv.start()
    yield srv, handler
    await srv.close(grace=1)


async def raw_exchange(port: int, data: bytes, n_answers: int) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    buf = b""
    async with asyncio.timeout(5):
        while buf.count(b"\x1c\r") < n_answers:
            chunk = await reader.read(65536)
            if not chunk:
                break
            buf += chunk
    writer.close()
    await writer.wait_closed()
    return [b[1:] for b in buf.split(b"\x1c\r") if b]


async def test_each_message_gets_its_answer_on_a_real_socket(server) -> None:
    srv, _ = server
    answers = await send_messages("127.0.0.1", srv.port, [msg("A1"), msg("A2")])
    assert answers == [b"ACK A1", b"ACK A2"]
    assert srv.stats.frames == 2 and srv.stats.connections == 1


async def test_concurrent_clients_with_many_messages_each_are_answered_in_order(server) -> None:
    srv, handler = server

    async def client(n: int) -> list[bytes]:
        return await send_messages("127.0.0.1", srv.port,
                                   [msg(f"C{n}-{i}") for i in range(40)])

    results = await asyncio.gather(*(client(n) for n in range(8)))
    for n, answers in enumerate(results):
        assert answers == [f"ACK C{n}-{i}".encode() for i in range(40)]
    assert len(handler.seen) == 320


async def test_frames_pipelined_on_one_connection_are_processed_strictly_in_order() -> None:
    handler = EchoHandler(delay=0.01)
    async with MllpServer(handler, "127.0.0.1", 0) as srv:
        data = b"".join(wrap(msg(f"P{i}")) for i in range(20))
        answers = await raw_exchange(srv.port, data, 20)
    assert answers == [f"ACK P{i}".encode() for i in range(20)]
    assert handler.seen == [f"P{i}".encode() for i in range(20)]


async def test_junk_between_frames_is_skipped_and_the_next_frame_still_answered(server) -> None:
    srv, _ = server
    answers = await raw_exchange(srv.port, b"garbage\r\n" + wrap(msg("J1")) + b"\n", 1)
    assert answers == [b"ACK J1"]
    await asyncio.sleep(0.05)
    assert srv.stats.junk_bytes == 10


async def test_an_oversized_frame_gets_the_oversize_answer_and_the_connection_stays_usable(
        server) -> None:
    srv, handler = server
    big = msg("BIG1", "\rOBX|1|TX|||" + "x" * 200_000)
    answers = await raw_exchange(srv.port, wrap(big) + wrap(msg("after")), 2)
    assert answers == [b"AR oversize BIG1", b"ACK after"]
    assert handler.heads[0].startswith(b"MSH|") and srv.stats.oversize == 1


async def test_a_handler_exception_closes_that_connection_and_the_server_keeps_serving(
        server, caplog: pytest.LogCaptureFixture) -> None:
    srv, _ = server
    with pytest.raises(ConnectionResetError):
        await send_messages("127.0.0.1", srv.port, [msg("BOOM1")], timeout=5)
    assert await send_messages("127.0.0.1", srv.port, [msg("OK1")]) == [b"ACK OK1"]
    assert srv.stats.errors == 1
    assert "RuntimeError" in caplog.text and "PID" not in caplog.text


async def test_a_truncated_frame_then_close_is_neither_processed_nor_answered(server) -> None:
    srv, handler = server
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(b"\x0b" + msg("TRUNC")[:40])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.1)
    assert handler.seen == [] and srv.stats.truncated == 1
    assert await send_messages("127.0.0.1", srv.port, [msg("N1")]) == [b"ACK N1"]


async def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    async with MllpServer(EchoHandler(), "127.0.0.1", 0, idle_timeout=0.2) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        async with asyncio.timeout(3):
            assert await reader.read(100) == b""  # closed by the server
        writer.close()
        assert srv.stats.idle_timeouts == 1


async def test_graceful_close_finishes_the_message_in_flight_and_answers_it() -> None:
    handler = EchoHandler()
    srv = MllpServer(handler, "127.0.0.1", 0)
    await srv.start()
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", srv.port)
    client = await MllpClient.connect("127.0.0.1", srv.port, timeout=5)
    pending = asyncio.create_task(client.send(msg("SLOW1")))
    await asyncio.sleep(0.1)  # the handler is now sleeping on SLOW1
    await srv.close(grace=5)
    assert await pending == [b"ACK SLOW1"]
    assert await idle_reader.read(10) == b""
    idle_writer.close()
    await client.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", srv.port)


async def test_the_client_collects_a_commit_ack_and_then_the_application_ack(server) -> None:
    srv, _ = server
    answers = await send_messages("127.0.0.1", srv.port, [msg("TWO1", "|||AL|AL")])
    assert answers == [b"MSA|CA|TWO1", b"MSA|AA|TWO1"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=2000))
async def test_random_bytes_never_stop_the_server(server, junk: bytes) -> None:
    srv, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(junk)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    assert await send_messages("127.0.0.1", srv.port, [msg("ALIVE")]) == [b"ACK ALIVE"]


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base: Path = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    client_cert = ca.issue_cert("lab-hpg23.example", common_name="lab-hpg23.example")
    paths = {"ca": base / "ca.pem", "server": base / "server.pem", "client": base / "client.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(paths["server"]))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return {k: str(v) for k, v in paths.items()}


async def test_messages_are_answered_over_tls(pki: dict[str, str]) -> None:
    ctx = server_ssl_context(pki["server"])
    async with MllpServer(EchoHandler(), "127.0.0.1", 0, ssl_context=ctx) as srv:
        answers = await send_messages("127.0.0.1", srv.port, [msg("T1")],
                                      ssl_context=client_ssl_context(pki["ca"]))
    assert answers == [b"ACK T1"]


async def test_mutual_tls_accepts_a_client_certificate_and_names_its_subject(
        pki: dict[str, str]) -> None:
    handler = EchoHandler()
    ctx = server_ssl_context(pki["server"], client_ca=pki["ca"])
    async with MllpServer(handler, "127.0.0.1", 0, ssl_context=ctx) as srv:
        client_ctx = client_ssl_context(pki["ca"], cert=pki["client"])
        answers = await send_messages("127.0.0.1", srv.port, [msg("M1")], ssl_context=client_ctx)
    assert answers == [b"ACK M1"]
    assert handler.peers[0].tls and "lab-hpg23.example" in (handler.peers[0].cert_subject or "")


async def test_mutual_tls_refuses_a_client_without_a_certificate(pki: dict[str, str]) -> None:
    handler = EchoHandler()
    ctx = server_ssl_context(pki["server"], client_ca=pki["ca"])
    async with MllpServer(handler, "127.0.0.1", 0, ssl_context=ctx) as srv:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await send_messages("127.0.0.1", srv.port, [msg("NOCERT")],
                                ssl_context=client_ssl_context(pki["ca"]), timeout=5)
    assert handler.seen == []

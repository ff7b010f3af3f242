"""HTTP bounds of ``gateway serve`` through real sockets: body limits per endpoint family
(413 before the body is read, counted while a chunked body streams), JSON depth, URL
length, the connection cap, timeouts for half-sent requests (slowloris), no ``server``
header, and the public base URL from configuration only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.runtime import Gateway

MAX_MESSAGE = 4096


async def start(tmp_path: Path, **options: Any) -> Gateway:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        bus=BusSettings(node_id="test-node"), max_message_size=MAX_MESSAGE,
                        **options)
    gateway = Gateway(settings)
    await gateway.start()
    return gateway


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start(tmp_path, http_header_timeout=0.5, http_body_timeout=0.5,
                     http_max_connections=20)
    yield gw
    await gw.stop()


async def exchange(gw: Gateway, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.http_port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> Any:
    return orjson.loads(response.split(b"\r\n\r\n", 1)[1])


async def test_a_fhir_body_announced_beyond_10_mb_is_refused_413_before_it_is_sent(
        gateway: Gateway) -> None:
    head = (b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json"
            b"\r\nContent-Length: 20000000\r\n\r\n")
    response = await exchange(gateway, head)  # no body at all: answered from the headers
    assert status_of(response) == 413
    issue = body_of(response)["issue"][0]
    assert issue["code"] == "too-long" and "10485760 bytes" in issue["diagnostics"]


async def test_an_hl7_body_beyond_the_maximum_message_size_is_413(gateway: Gateway) -> None:
    head = (b"POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n" % (MAX_MESSAGE + 1))
    response = await exchange(gateway, head)
    assert status_of(response) == 413
    assert f"larger than {MAX_MESSAGE} bytes" in body_of(response)["detail"]


async def test_a_lab_export_announced_beyond_50_mb_is_413_before_it_is_sent(
        gateway: Gateway) -> None:
    head = (b"POST /lab-exports?site=HPG23 HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Content-Length: %d\r\n\r\n" % (50 * 2**20 + 1))
    response = await exchange(gateway, head)
    assert status_of(response) == 413
    assert "larger than 52428800 bytes" in body_of(response)["detail"]


async def chunked(gw: Gateway, head: bytes, chunk: bytes, count: int) -> bytes:
    """Send a chunked body of ``count`` chunks (without its last chunk) and read the
    answer: the server must answer once the limit is passed, without the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.http_port)
    try:
        writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(count):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_a_chunked_body_is_counted_while_it_streams_and_stopped_at_the_limit(
        gateway: Gateway) -> None:
    head = b"POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
    response = await chunked(gateway, head, b"x" * 1024, MAX_MESSAGE // 1024 + 1)
    assert status_of(response) == 413
    assert f"larger than {MAX_MESSAGE} bytes" in body_of(response)["detail"]


async def test_a_chunked_fhir_write_beyond_10_mb_is_413_with_an_outcome(
        gateway: Gateway) -> None:
    head = (b"PUT /fhir/Patient/big HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/fhir+json\r\n")
    response = await chunked(gateway, head, b"a" * 65536, 10 * 16 + 1)
    assert status_of(response) == 413
    assert body_of(response)["issue"][0]["code"] == "too-long"


async def test_a_body_within_its_limit_still_gets_through(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        response = await http.put("/fhir/Patient/p1", json={
            "resourceType": "Patient", "id": "p1", "gender": "female"},
            headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 201


async def test_a_fhir_write_nesting_deeper_than_64_levels_is_400(gateway: Gateway) -> None:
    nested: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(70):
        nested = {"url": "http://example.org/e", "extension": [nested]}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        response = await http.put("/fhir/Patient/deep", json={
            "resourceType": "Patient", "id": "deep", "extension": [nested]},
            headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 400
    assert "nests deeper than 64 levels" in response.json()["issue"][0]["diagnostics"]


async def test_a_url_longer_than_8_kib_is_414_with_an_outcome(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        response = await http.get("/fhir/Observation", params={"code": "x" * 9000})
    assert response.status_code == 414
    assert "POST [type]/_search" in response.json()["issue"][0]["diagnostics"]


async def test_half_sent_request_headers_are_answered_408_and_closed(gateway: Gateway) -> None:
    start = time.monotonic()
    response = await exchange(gateway, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert status_of(response) == 408
    assert 0.4 < time.monotonic() - start < 3


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
        gateway: Gateway) -> None:
    start = time.monotonic()
    assert await exchange(gateway, b"") == b""
    assert time.monotonic() - start < 3


async def test_a_body_that_stops_midway_closes_the_connection(gateway: Gateway) -> None:
    head = (b"POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 1000\r\n\r\nMSH|^~\\&|")
    start = time.monotonic()
    await exchange(gateway, head)
    assert time.monotonic() - start < 3


async def test_headers_sent_slowly_but_complete_in_time_are_served(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n\r\n"):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.1)
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert status_of(response) == 200


async def test_keep_alive_requests_each_get_their_own_header_timeout(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        for _ in range(3):
            assert (await http.get("/healthz")).status_code == 200
            await asyncio.sleep(0.3)  # 0.9 s on one connection, beyond one header timeout


async def test_connections_beyond_the_maximum_are_answered_503_and_closed(
        tmp_path: Path) -> None:
    gw = await start(tmp_path, http_max_connections=5, http_header_timeout=30)
    idle = [await asyncio.open_connection("127.0.0.1", gw.http_port) for _ in range(5)]
    try:
        refused = await exchange(gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(refused) == 503
        idle.pop()[1].close()
        await asyncio.sleep(0.2)
        served = await exchange(gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n")
        assert status_of(served) == 200
    finally:
        for _, writer in idle:
            writer.close()
        await gw.stop()


async def test_responses_carry_no_server_header(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        response = await http.get("/fhir/metadata")
    assert response.status_code == 200
    assert "server" not in response.headers


async def test_full_urls_and_paging_links_come_from_the_public_url_not_the_host_header(
        tmp_path: Path) -> None:
    gw = await start(tmp_path, public_url="https://gw.example.org/")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}",
                                     headers={"Host": "evil.example"}) as http:
            for i in range(3):
                await http.put(f"/fhir/Patient/h{i}", json={"resourceType": "Patient",
                                                             "id": f"h{i}"})
            page = (await http.get("/fhir/Patient", params={"_count": "2"})).json()
            history = (await http.get("/fhir/Patient/_history",
                                      params={"_count": "1"})).json()
            created = await http.post("/fhir/Patient", json={"resourceType": "Patient"})
            maps = (await http.get("/fhir/ConceptMap")).json()
    finally:
        await gw.stop()
    urls = [e["fullUrl"] for e in page["entry"]] + [link["url"] for link in page["link"]]
    urls += [e["fullUrl"] for e in maps["entry"]]
    urls += [link["url"] for link in history["link"]]
    urls.append(created.headers["location"])
    assert {link["relation"] for link in page["link"]} >= {"self", "next"}
    assert all(url.startswith("https://gw.example.org/fhir/") for url in urls), urls
    assert not any("evil" in url for url in urls)


async def test_without_a_public_url_the_listener_address_is_the_base(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}",
                                 headers={"Host": "evil.example"}) as http:
        await http.put("/fhir/Patient/a1", json={"resourceType": "Patient", "id": "a1"})
        page = (await http.get("/fhir/Patient")).json()
    assert page["entry"][0]["fullUrl"] == (
        f"http://127.0.0.1:{gateway.http_port}/fhir/Patient/a1")


def test_a_flood_of_closed_connections_is_reported_once_per_period_with_its_count(
        caplog: pytest.LogCaptureFixture) -> None:
    from gateway.api.connections import Report

    report = Report(every=60)
    for _ in range(500):
        report("request headers not complete within 10 s: closed with 408")
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.api.connections"]
    assert lines == ["HTTP: request headers not complete within 10 s: closed with 408 "
                     "(1 since the last report)"]
    report.last = {k: v - 61 for k, v in report.last.items()}
    report("request headers not complete within 10 s: closed with 408")
    assert caplog.records[-1].getMessage().endswith("(500 since the last report)")

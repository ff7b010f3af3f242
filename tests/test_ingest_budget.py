"""Issue 15: the per-message time budget of the ingest. A message whose mapping runs past
``message_time_budget`` is abandoned, stored as an error (replayable) and answered AE with
an ERR that says so; the messages behind it on the single writer thread go on."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import httpx

from gateway.adapters.loader import EXAMPLE_SITES, load_network
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.hl7.mllp import MllpClient
from gateway.hl7.parser import parse
from gateway.ingest import IngestService
from gateway.runtime import Gateway
from gateway.store.sql import SqlStore
from tests.adapters.conftest import csv_of
from tests.support import process
from tests.test_ingest import oru

# The Bergamo ORU with many OBX that all carry the same code (OBX-3 1988-5): mapping it
# costs time in proportion to the OBX, far more than the tiny budgets below.
OBX = "OBX|{n}|NM|1988-5^C reactive protein^LN||12.5|mg/L^mg/L^UCUM|0-5|H|||F|||20261127080000"


def huge(cid: str, obx: int) -> bytes:
    head = oru(cid).decode().split("\r")[:3]
    return ("\r".join(head + [OBX.format(n=i) for i in range(1, obx + 1)]) + "\r").encode()


def ack_fields(ack: bytes) -> tuple[str, str, str]:
    """(MSA-1, ERR-3.1, ERR-8) of an ACK."""
    msg = parse(ack)
    msa = next(s for s in msg.segments if s.name == "MSA")
    errs = [s for s in msg.segments if s.name == "ERR"]
    return msa.get(1), errs[0].get(3) if errs else "", errs[0].get(8) if errs else ""


def test_a_message_past_its_budget_is_stored_as_an_error_and_answered_ae(
        store: SqlStore) -> None:
    service = IngestService(store, load_network(), b"k" * 32, message_time_budget=0.01)
    outcome = process(service, huge("BIG1", 5_000), "mllp")
    code, err_code, text = ack_fields(outcome.responses[0])
    assert (outcome.status, code, err_code) == ("error", "AE", "207")
    assert "time budget" in text
    record = store.inbox_find("LAB", "HPG23", "BIG1")
    assert record is not None and record.status == "error" and record.resource_refs == []
    # replayed with a budget it fits in, the same stored message is mapped and stored
    roomy = IngestService(store, load_network(), b"k" * 32, message_time_budget=60,
                          max_resources=None)
    assert roomy.replay(record).status == "processed"


def test_a_message_mapping_to_more_resources_than_allowed_is_stored_and_answered_ae(
        store: SqlStore) -> None:
    service = IngestService(store, load_network(), b"k" * 32, max_resources=100)
    outcome = process(service, huge("MANY1", 200), "mllp")
    code, err_code, text = ack_fields(outcome.responses[0])
    assert (outcome.status, code, err_code) == ("error", "AE", "207")
    assert "more than 100 resources" in text
    assert service.over_budget == {"resources": 1}
    record = store.inbox_find("LAB", "HPG23", "MANY1")
    assert record is not None and record.status == "error"


async def test_the_issue_s_20000_obx_message_gets_ae_at_once_with_the_default_limits(
        tmp_path: Path, sqlite_url: str) -> None:
    """The reproduction of issue 15 with the defaults (10 s budget, 5,000 resources): the
    huge message is refused after 5,000 Observations, a normal one beside it gets AA fast."""
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=sqlite_url, bus=BusSettings(node_id="test-node"))
    gw = Gateway(settings)
    await gw.start()
    try:
        assert gw.mllp is not None
        big = asyncio.create_task(_send(gw.mllp.port, huge("BIG4", 20_000)))
        await asyncio.sleep(0.2)
        small_ack, small_s = await _send(gw.mllp.port, oru("SMALL4"))
        big_ack, big_s = await big
    finally:
        await gw.stop()
    assert ack_fields(small_ack)[0] == "AA" and small_s < 2.0, small_s
    code, err_code, text = ack_fields(big_ack)
    assert (code, err_code) == ("AE", "207") and "5000 resources" in text


def test_a_message_within_its_budget_is_processed(store: SqlStore) -> None:
    service = IngestService(store, load_network(), b"k" * 32, message_time_budget=60)
    assert process(service, huge("BIG2", 200), "mllp").status == "processed"


async def _send(port: int, message: bytes) -> tuple[bytes, float]:
    start = time.perf_counter()
    async with await MllpClient.connect("127.0.0.1", port, timeout=60) as client:
        [answer] = await client.send(message)
    return answer, time.perf_counter() - start


async def test_a_normal_message_is_acknowledged_quickly_while_a_huge_one_runs_out_its_budget(
        tmp_path: Path, database_url: str) -> None:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=database_url, message_time_budget=0.2,
                        max_resources_per_message=0, bus=BusSettings(node_id="test-node"))
    gw = Gateway(settings)
    await gw.start()
    try:
        assert gw.mllp is not None
        big = asyncio.create_task(_send(gw.mllp.port, huge("BIG3", 20_000)))
        await asyncio.sleep(0.2)  # the huge one is on the writer thread first
        small_ack, small_s = await _send(gw.mllp.port, oru("SMALL3"))
        big_ack, big_s = await big
        async with httpx.AsyncClient() as http:  # loopback demo: no authentication
            counters = (await http.get(f"http://127.0.0.1:{gw.http_port}/admin/counters")).json()
    finally:
        await gw.stop()
    assert ack_fields(small_ack)[0] == "AA"
    assert small_s < 2.0, small_s
    assert ack_fields(big_ack)[:2] == ("AE", "207")
    assert counters["ingest"]["over_time_budget"] == 1


async def test_a_drop_folder_file_that_used_to_stop_the_watcher_leaves_it_running(
        tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=sqlite_url, bus=BusSettings(node_id="test-node"))
    gw = Gateway(settings)
    await gw.start()
    folder = tmp_path / "var" / "drop" / "hpg23"
    try:
        # a CSV field over the csv module's limit (the issue's reproduction), then a good file
        (folder / "a-long.csv").write_bytes(csv_of("7,,,,,2026-11-20,PCR,,," + "1" * 200_000
                                                   + ",mg/L,,,,,"))
        await _wait_for(folder / "error" / "a-long.csv.report.json")
        (folder / "b-good.csv").write_bytes(csv_of("7,,,,,2026-11-20,PCR,,,4,mg/L,,,,,"))
        await _wait_for(folder / "done" / "b-good.csv.report.json")
        watcher = next(t for t in gw.extras if getattr(t, "get_name", lambda: "")()
                       == "drop-folders")
        assert not watcher.done()
    finally:
        await gw.stop()


async def _wait_for(path: Path, seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path.name} did not appear")


async def test_strict_validation_of_a_large_message_runs_beside_the_writer_not_on_it(
        tmp_path: Path, sqlite_url: str) -> None:
    """hl7apy costs ~10 ms per segment: a 600-OBX message on a strict site takes seconds to
    validate, on a worker thread; a normal message of a lenient site meanwhile is acked."""
    sites = tmp_path / "sites"
    shutil.copytree(EXAMPLE_SITES, sites)
    hpg23 = sites / "hpg23.yaml"
    hpg23.write_text(hpg23.read_text(encoding="utf-8") + "\nstrict_validation: true\n",
                     encoding="utf-8")
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var", sites=sites,
                        database_url=sqlite_url, bus=BusSettings(node_id="test-node"))
    gw = Gateway(settings)
    await gw.start()
    try:
        assert gw.mllp is not None
        big = asyncio.create_task(_send(gw.mllp.port, huge("STRICT1", 600)))
        await asyncio.sleep(0.2)
        lenient = oru("LENIENT1").replace(b"|HPG23|", b"|ASSTMONZA|", 1)
        small_ack, small_s = await _send(gw.mllp.port, lenient)
        big_ack, big_s = await big
    finally:
        await gw.stop()
    assert ack_fields(small_ack)[0] == "AA", small_ack
    # on the writer, the small one would wait for the whole validation (small ≈ big - 0.2 s)
    assert small_s < min(2.0, big_s / 2), (small_s, big_s)
    assert ack_fields(big_ack)[0] in ("AA", "AE")


async def test_the_writer_thread_outlives_a_failure_outside_its_transaction(
        store: SqlStore) -> None:
    """``on_commit`` (the bus's wake-up) raising after the commit: the sender is told to
    resend (the resend gets the stored answer), the next message is processed as usual."""
    calls = []

    def notify(rows: int) -> None:
        calls.append(rows)
        if len(calls) == 1:
            raise RuntimeError("wake-up failed")

    service = IngestService(store, load_network(), b"k" * 32, on_commit=notify)
    try:
        first = await service.handle(oru("W1"))
        again = await service.handle(oru("W1"))
        second = await service.handle(oru("W2"))
    finally:
        service.stop()
    assert (first.status, first.ack_code) == ("refused", "AE")
    assert (again.status, again.ack_code) == ("duplicate", "AA")
    assert (second.status, second.ack_code) == ("processed", "AA")


async def test_a_strict_sites_invalid_message_gets_ae_naming_the_position_and_is_stored_once(
        tmp_path: Path, sqlite_url: str) -> None:
    """Strict validation's errors found beside the writer reach the writer as the job's
    ``checked`` errors: the sender gets AE with the first error's position, the message is
    kept once in the inbox as an error, and a valid message of the same site is AA."""
    sites = tmp_path / "sites"
    shutil.copytree(EXAMPLE_SITES, sites)
    hpg23 = sites / "hpg23.yaml"
    hpg23.write_text(hpg23.read_text(encoding="utf-8") + "\nstrict_validation: true\n",
                     encoding="utf-8")
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var", sites=sites,
                        database_url=sqlite_url, bus=BusSettings(node_id="test-node"))
    gw = Gateway(settings)
    await gw.start()
    try:
        assert gw.mllp is not None and gw.store is not None
        bad = oru("STRICTBAD").replace(b"\rOBX|1|", b"\rZZZ|not a segment\rOBX|1|", 1)
        bad_ack, _ = await _send(gw.mllp.port, bad)
        good_ack, _ = await _send(gw.mllp.port, oru("STRICTGOOD"))
        rows = [r for r in gw.store.inbox_list(limit=10)
                if r.control_id in ("STRICTBAD", "STRICTGOOD")]
    finally:
        await gw.stop()
    assert ack_fields(bad_ack)[0] == "AE", bad_ack
    assert b"ERR|" in bad_ack, bad_ack
    assert ack_fields(good_ack)[0] == "AA", good_ack
    assert sorted((r.control_id, r.status) for r in rows) == [
        ("STRICTBAD", "error"), ("STRICTGOOD", "processed")]

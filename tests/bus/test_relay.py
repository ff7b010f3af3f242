"""The outbox relay against tansu: order, acknowledgement before marking, broker outages."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import orjson

from gateway.bus.base import CONTENT_TYPE, topic_for, valid_traceparent
from gateway.bus.components import make_relay
from gateway.bus.embedded import EmbeddedBus
from gateway.bus.kafka import KafkaBus
from gateway.bus.relay import OutboxRelay
from gateway.bus.settings import BusSettings
from gateway.store.sql import SqlStore
from tests.bus.busutil import collect, observation, patient, wait_until, write


def settings_for(bootstrap: str, prefix: str, **extra: object) -> BusSettings:
    return BusSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, node_id="edge-a",
                       kafka_request_timeout=2.0, kafka_session_timeout=2.0,
                       relay_max_backoff=0.5, **extra)  # type: ignore[arg-type]


async def test_the_relay_publishes_the_outbox_in_order_and_marks_it_published(
        kafka_settings: BusSettings, edge_store: SqlStore) -> None:
    write(edge_store, [patient(i) for i in range(5)], message_id="M1")
    write(edge_store, [patient(i, "male") for i in range(5)], message_id="M2")
    write(edge_store, [observation(1, 4.2)], message_id="M3")
    bus = KafkaBus(kafka_settings)
    relay = make_relay(kafka_settings, edge_store, bus)
    await relay.start()
    assert await wait_until(lambda: relay.pending == 0 and edge_store.outbox_pending() == 0)
    await relay.stop()
    prefix = kafka_settings.topic_prefix
    got = await collect(bus, "check", [topic_for("Patient", prefix),
                                       topic_for("Observation", prefix)], 11)
    await bus.stop()
    assert len(got) == 11
    patients = [d for d in got if d.key.startswith("Patient/")]
    for i in range(5):
        mine = [orjson.loads(d.value or b"") for d in patients if d.key == f"Patient/p{i}"]
        assert [r["meta"]["versionId"] for r in mine] == ["1", "2"]
        assert [r["gender"] for r in mine] == ["female", "male"]
    for d in got:
        assert d.headers["content-type"] == CONTENT_TYPE
        assert d.headers["origin"] == "edge-test" and d.headers["site"] == "ospedale-a"
        assert d.headers["message-id"] in {"M1", "M2", "M3"}
        assert valid_traceparent(d.headers["traceparent"])
        assert d.headers["version-id"] == orjson.loads(d.value or b"")["meta"]["versionId"]


async def test_rows_written_while_the_broker_is_down_all_arrive_once_it_is_up(
        broker_factory: type, edge_store: SqlStore, prefix: str) -> None:
    broker = broker_factory()  # port chosen, broker not started yet
    settings = settings_for(broker.bootstrap, prefix, outbox_max=20)
    bus = KafkaBus(settings)
    relay = make_relay(settings, edge_store, bus)
    await relay.start()
    for n in range(5):
        write(edge_store, [patient(n * 5 + i) for i in range(5)], message_id=f"M{n}")
        relay.notify(5)
    assert await wait_until(lambda: relay.last_error is not None)
    assert edge_store.outbox_pending() == 25 and not relay.healthy
    assert not relay.accepting()  # 25 pending > outbox_max 20: the ingest answers AE 207
    broker.start()
    assert await wait_until(lambda: edge_store.outbox_pending() == 0, deadline=30)
    assert await wait_until(lambda: relay.healthy and relay.accepting())
    await relay.stop()
    expected = {f"Patient/p{i}" for i in range(25)}
    got = await collect(bus, "check", [topic_for("Patient", prefix)], 0, keys=expected)
    await bus.stop()
    assert {d.key for d in got} == expected


async def test_a_broker_restart_mid_stream_loses_nothing_written_during_the_outage(
        broker_factory: type, edge_store: SqlStore, prefix: str) -> None:
    broker = broker_factory()
    broker.start()
    settings = settings_for(broker.bootstrap, prefix)
    bus = KafkaBus(settings)
    relay = make_relay(settings, edge_store, bus)
    await relay.start()
    write(edge_store, [patient(i) for i in range(10)])
    relay.notify(10)
    assert await wait_until(lambda: edge_store.outbox_pending() == 0)
    broker.stop()
    write(edge_store, [patient(i) for i in range(10, 30)], message_id="M2")
    relay.notify(20)
    assert await wait_until(lambda: relay.last_error is not None)
    broker.start()  # memory storage: the new broker starts empty, topics are re-created
    assert await wait_until(lambda: edge_store.outbox_pending() == 0, deadline=30)
    await relay.stop()
    expected = {f"Patient/p{i}" for i in range(10, 30)}
    got = await collect(bus, "check", [topic_for("Patient", prefix)], 0, keys=expected)
    await bus.stop()
    # at least once: a batch that timed out during the outage may arrive twice
    assert {d.key for d in got} == expected


async def test_notify_wakes_the_relay_without_waiting_for_the_poll_interval(
        kafka_settings: BusSettings, edge_store: SqlStore) -> None:
    bus = KafkaBus(kafka_settings)
    relay = make_relay(kafka_settings, edge_store, bus)
    relay.poll_interval = 60.0
    await relay.start()
    await asyncio.sleep(0.3)  # the relay is now asleep on an empty outbox
    write(edge_store, [patient(1)])
    started = time.monotonic()
    relay.notify()
    assert await wait_until(lambda: edge_store.outbox_pending() == 0, deadline=5)
    assert time.monotonic() - started < 2
    await relay.stop()
    await bus.stop()


async def test_notify_from_the_ingest_writer_thread_wakes_the_relay_at_once(
        kafka_settings: BusSettings, edge_store: SqlStore) -> None:
    bus = KafkaBus(kafka_settings)
    relay = make_relay(kafka_settings, edge_store, bus)
    relay.poll_interval = 60.0
    await relay.start()
    await asyncio.sleep(0.3)

    def ingest_commit() -> None:  # what the writer thread does after its commit
        write(edge_store, [patient(2)])
        relay.notify(1)

    started = time.monotonic()
    await asyncio.to_thread(ingest_commit)
    assert await wait_until(lambda: edge_store.outbox_pending() == 0, deadline=5)
    assert time.monotonic() - started < 2
    await relay.stop()
    await bus.stop()


def test_the_backoff_grows_exponentially_with_jitter_up_to_the_cap(
        edge_store: SqlStore) -> None:
    relay = make_relay(BusSettings(relay_max_backoff=8.0), edge_store, bus=None)  # type: ignore[arg-type]
    delays = [[relay.backoff(n) for _ in range(200)] for n in (1, 3, 10)]
    assert max(delays[0]) <= 0.4 + 1e-9
    assert max(delays[1]) <= 1.6 + 1e-9 and max(delays[1]) > 0.8
    assert max(delays[2]) <= 8.0 and min(delays[2]) >= 0.2
    assert len(set(delays[2])) > 100  # jitter: retries of many edges do not align


async def test_publishing_goes_on_while_the_marks_wait_for_a_busy_writer(
        tmp_path: Path, sqlite_url: str, edge_store: SqlStore) -> None:
    """Under load the ingest's writer holds SQLite's write lock almost all the time; the
    marks wait for it, the records behind them do not (they reach the bus, then the
    rows are marked once the lock is free)."""
    write(edge_store, [patient(i) for i in range(6)], message_id="BUSY")
    bus = EmbeddedBus(f"sqlite:///{tmp_path / 'bus.db'}")
    relay = OutboxRelay(edge_store, bus, batch_size=2, poll_interval=0.05)
    writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a writer that does not let go
    consumer = bus.subscribe("check", [topic_for("Patient")])
    try:
        await relay.start()
        await consumer.start()
        got: list[object] = []
        deadline = time.monotonic() + 10
        while len(got) < 6 and time.monotonic() < deadline:
            got += await consumer.getmany(max_wait=0.2)
        assert len(got) == 6  # every batch published, the first one's mark still waiting
        assert edge_store.outbox_pending() == 6 and relay.pending == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert await wait_until(lambda: edge_store.outbox_pending() == 0, deadline=10)
    await relay.drain()
    await relay.stop()
    await bus.stop()

"""The embedded durable bus: the same consumer-group semantics as Kafka, in one database."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.bus.base import BusRecord, TopicPartition, topic_for
from gateway.bus.components import make_projector, make_relay
from gateway.bus.embedded import EmbeddedBus
from gateway.bus.settings import BusSettings
from gateway.store.sql import SqlStore
from tests.bus.busutil import observation, patient, versions, wait_until, write

PATIENTS = topic_for("Patient")


@pytest.fixture
def bus_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bus.db'}"


def records(n: int, start: int = 0) -> list[BusRecord]:
    return [BusRecord(PATIENTS, f"Patient/p{i}", f'{{"n":{i}}}'.encode(), {"site": "a"})
            for i in range(start, start + n)]


async def test_a_record_and_a_tombstone_come_back_in_order_with_their_headers(
        bus_url: str) -> None:
    bus = EmbeddedBus(bus_url)
    await bus.start()
    await bus.publish([*records(2), BusRecord(PATIENTS, "Patient/p0", None, {"version-id": "2"})])
    consumer = bus.subscribe("g", [PATIENTS])
    await consumer.start()
    got = await consumer.getmany(max_wait=0.1)
    assert [(d.key, d.value, d.headers) for d in got] == [
        ("Patient/p0", b'{"n":0}', {"site": "a"}), ("Patient/p1", b'{"n":1}', {"site": "a"}),
        ("Patient/p0", None, {"version-id": "2"})]
    assert [d.offset for d in got] == sorted(d.offset for d in got)
    await bus.stop()


async def test_a_restarted_member_gets_again_exactly_what_it_had_not_committed(
        bus_url: str) -> None:
    bus = EmbeddedBus(bus_url)
    await bus.start()
    await bus.publish(records(10))
    consumer = bus.subscribe("hub", [PATIENTS])
    await consumer.start()
    first = await consumer.getmany(max_wait=0.1, max_records=4)
    await consumer.commit({TopicPartition(PATIENTS, 0): first[-1].offset + 1})
    await consumer.getmany(max_wait=0.1)  # read the rest, crash before committing
    await bus.stop()
    reopened = EmbeddedBus(bus_url)  # a new process on the same data dir
    again = reopened.subscribe("hub", [PATIENTS])
    await again.start()
    redelivered = await again.getmany(max_wait=0.1)
    assert [d.key for d in redelivered] == [f"Patient/p{i}" for i in range(4, 10)]
    assert again.lag() == {f"{PATIENTS}[0]": 6}
    other = reopened.subscribe("analytics", [PATIENTS])  # another group reads everything
    await other.start()
    assert len(await other.getmany(max_wait=0.1)) == 10
    await reopened.stop()


async def test_a_waiting_consumer_wakes_as_soon_as_a_record_is_published(bus_url: str) -> None:
    bus = EmbeddedBus(bus_url, poll_interval=5.0)
    await bus.start()
    consumer = bus.subscribe("g", [PATIENTS])
    await consumer.start()
    started = time.monotonic()
    waiting = asyncio.create_task(consumer.getmany(max_wait=10))
    await asyncio.sleep(0.1)
    await bus.publish(records(1))
    assert len(await waiting) == 1
    assert time.monotonic() - started < 2
    await bus.stop()


async def test_records_older_than_the_retention_are_pruned_at_start(bus_url: str) -> None:
    bus = EmbeddedBus(bus_url, retention_hours=1 / 3600)  # one second
    await bus.start()
    await bus.publish(records(3))
    await bus.stop()
    await asyncio.sleep(1.1)
    await bus.start()
    consumer = bus.subscribe("late", [PATIENTS])
    await consumer.start()
    assert await consumer.getmany(max_wait=0.1) == []
    await bus.stop()


async def test_edge_to_hub_through_the_embedded_bus_projects_every_version(
        tmp_path: Path, edge_store: SqlStore) -> None:
    hub = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    hub.migrate()
    settings = BusSettings(embedded_bus_url=f"sqlite:///{tmp_path / 'bus.db'}")
    bus = EmbeddedBus(settings.embedded_bus_url or "")
    relay = make_relay(settings, edge_store, bus)
    projector = make_projector(settings, hub, bus)
    await relay.start()
    await projector.start()
    write(edge_store, [patient(i) for i in range(10)] + [observation(i, 1.5) for i in range(10)])
    relay.notify(20)
    write(edge_store, [patient(i, "male") for i in range(5)], message_id="M2")
    with edge_store.transaction() as tx:
        tx.delete("Observation", "o2")
    relay.notify(6)
    expected = versions(edge_store)
    assert await wait_until(lambda: versions(hub) == expected, deadline=10)
    assert await wait_until(lambda: projector.status()["lag_total"] == 0, deadline=5)
    await projector.stop()
    await relay.stop()
    await bus.stop()
    hub.close()


async def test_a_lingering_projector_takes_what_arrived_meanwhile_in_one_chunk(
        tmp_path: Path, edge_store: SqlStore) -> None:
    """Role all's child waits ``linger`` after a small chunk: what the relay publishes in
    that time is one store transaction, not one per publish."""
    hub = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    hub.migrate()
    settings = BusSettings(embedded_bus_url=f"sqlite:///{tmp_path / 'bus.db'}")
    bus = EmbeddedBus(settings.embedded_bus_url or "")
    relay = make_relay(settings, edge_store, bus)
    projector = make_projector(settings, hub, bus)
    projector.linger = 0.5
    await relay.start()
    await projector.start()
    try:
        write(edge_store, [patient(0)])
        relay.notify(1)
        assert await wait_until(lambda: projector.applied == 1, deadline=10)
        assert projector.chunks == 1
        for i in (1, 2, 3):  # three commits, three publishes, within the linger
            write(edge_store, [patient(i)], message_id=f"M{i}")
            relay.notify(1)
            assert await wait_until(lambda i=i: relay.status()["published"] == 1 + i)
        assert await wait_until(lambda: projector.applied == 4, deadline=10)
        assert projector.chunks == 2
        assert projector.status()["chunks"] == 2
    finally:
        await projector.stop()
        await relay.stop()
        await bus.stop()
        hub.close()

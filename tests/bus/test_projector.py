"""The hub projector: edge (SQLite) → tansu → hub (PostgreSQL), redelivery, rebalance."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from gateway.bus.base import TopicPartition
from gateway.bus.components import make_projector, make_relay
from gateway.bus.kafka import KafkaBus
from gateway.bus.projector import HubProjector
from gateway.bus.settings import BusSettings
from gateway.errors import BusError
from gateway.store.sql import SqlStore
from tests.bus.busutil import observation, patient, versions, wait_until, write

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def relay_all(settings: BusSettings, edge: SqlStore, bus: KafkaBus) -> None:
    relay = make_relay(settings, edge, bus)
    await relay.drain()


async def test_every_version_written_at_the_edge_appears_in_the_hub_unchanged(
        kafka_settings: BusSettings, edge_store: SqlStore, hub_store: SqlStore) -> None:
    write(edge_store, [patient(i) for i in range(20)] + [observation(i, i / 10) for i in range(20)])
    write(edge_store, [patient(i, "male") for i in range(0, 20, 2)], message_id="M2")
    with edge_store.transaction() as tx:
        tx.delete("Observation", "o3")
    bus = KafkaBus(kafka_settings)
    await relay_all(kafka_settings, edge_store, bus)
    projector = make_projector(kafka_settings, hub_store, bus)
    await projector.start()
    expected = versions(edge_store)
    assert await wait_until(lambda: versions(hub_store) == expected, deadline=30)
    assert await wait_until(lambda: projector.status()["lag_total"] == 0)
    await projector.stop()
    await bus.stop()


class CrashBeforeCommit:
    """A consumer whose offset commits never reach the broker (the process died first)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        raise BusError("crashed before the offset commit")


async def test_records_redelivered_after_a_crash_before_commit_add_no_versions(
        kafka_settings: BusSettings, edge_store: SqlStore, hub_store: SqlStore) -> None:
    write(edge_store, [patient(i) for i in range(30)])
    write(edge_store, [patient(i, "male") for i in range(30)], message_id="M2")
    bus = KafkaBus(kafka_settings)
    await relay_all(kafka_settings, edge_store, bus)
    expected = versions(edge_store)
    first = make_projector(kafka_settings, hub_store, bus)
    crashing = HubProjector(CrashBeforeCommit(first.consumer), hub_store)  # type: ignore[arg-type]
    await crashing.consumer.start()
    while versions(hub_store) != expected:
        with pytest.raises(BusError):
            await crashing.step()
    await crashing.consumer.stop()
    again = make_projector(kafka_settings, hub_store, bus)  # same group: starts over
    await again.start()
    assert await wait_until(lambda: again.applied >= 60, deadline=30)
    assert again.changed == 0  # every redelivered version was already there
    assert versions(hub_store) == expected
    await again.stop()
    await bus.stop()


async def test_two_projectors_in_one_group_rebalance_without_losing_or_doubling(
        kafka_settings: BusSettings, edge_store: SqlStore, hub_store: SqlStore) -> None:
    bus = KafkaBus(kafka_settings)
    relay = make_relay(kafka_settings, edge_store, bus)
    one = make_projector(kafka_settings, hub_store, bus)
    await one.start()
    for n in range(3):
        write(edge_store, [patient(i, ("female", "male", "other")[n]) for i in range(40)],
              message_id=f"M{n}")
        await relay.drain()
        if n == 0:
            two = make_projector(kafka_settings, hub_store, bus)
            await two.start()  # the group rebalances while records flow
        await asyncio.sleep(0.5)
    expected = versions(edge_store)
    assert await wait_until(lambda: versions(hub_store) == expected, deadline=30)
    assert len(expected) == 120
    assert one.applied > 0 and two.applied > 0  # both members owned partitions
    await one.stop()
    await two.stop()
    await bus.stop()

"""The hub projector's look-ahead: while one batch is written, the next is fetched and
prepared, but it reaches the store only after this batch's store commit and offset commit;
a batch whose write failed is retried before it; a prepared batch that turns out to hold a
poison record is applied record by record like any other."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import orjson
import pytest

from gateway.bus.base import Delivery, TopicPartition
from gateway.bus.projector import HubProjector
from gateway.errors import BusError, StoreError
from gateway.store.sql import SqlStore

TOPIC = "gateway.fhir.Observation"
TP = TopicPartition(TOPIC, 0)


def record(offset: int, rid: str, code: object = "8122-4", version: int = 1) -> Delivery:
    resource = {"resourceType": "Observation", "id": rid, "status": "final",
                "meta": {"versionId": str(version), "lastUpdated": "2026-11-27T10:00:00Z"},
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}
    return Delivery(TOPIC, 0, offset, f"Observation/{rid}", orjson.dumps(resource), {})


class Batches:
    """Hands out the given batches in order, whatever ``max_wait`` (a fake: the broker is
    tested elsewhere); notes what the store held at each offset commit."""

    def __init__(self, store: SqlStore, batches: list[list[Delivery]]) -> None:
        self.store = store
        self.batches = batches
        self.waits: list[float] = []
        self.commits: list[tuple[int, set[str]]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, max_wait: float = 1.0, max_records: int = 1000) -> list[Delivery]:
        self.waits.append(max_wait)
        return self.batches.pop(0) if self.batches else []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        with self.store.engine.connect() as conn:
            ids = {row[0] for row in conn.exec_driver_sql("SELECT res_id FROM resource")}
        self.commits.append((offsets[TP], ids))

    def lag(self) -> dict[str, int]:
        return {}


class FailingOnce:
    """The store, whose first transaction fails as a lost database connection does."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.dialect = store.dialect
        self.failed = False

    def transaction(self) -> AbstractContextManager[Any]:
        if not self.failed:
            self.failed = True
            raise StoreError("database connection lost")
        return self.store.transaction()


async def test_the_next_batch_is_prepared_during_a_write_and_stored_only_after_its_commit(
        store: SqlStore) -> None:
    consumer = Batches(store, [[record(0, "a"), record(1, "b")], [record(2, "c")],
                               [record(3, "d")]])
    projector = HubProjector(consumer, store)  # type: ignore[arg-type]
    assert await projector.step() == 2
    assert consumer.waits == [1.0, 0]  # the look-ahead took what was there, without waiting
    assert consumer.commits == [(2, {"a", "b"})]  # c was fetched, not yet stored
    assert await projector.step() == 1
    assert await projector.step() == 1
    assert await projector.step() == 0
    assert consumer.commits == [(2, {"a", "b"}), (3, {"a", "b", "c"}),
                                (4, {"a", "b", "c", "d"})]
    assert projector.applied == projector.changed == 4


async def test_a_failed_write_is_retried_before_the_batch_prepared_behind_it(
        store: SqlStore) -> None:
    consumer = Batches(store, [[record(0, "a")], [record(1, "b"), record(2, "a", version=2)]])
    projector = HubProjector(consumer, FailingOnce(store))  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        await projector.step()
    assert consumer.commits == []
    assert await projector.step() == 1  # the failed batch first
    assert await projector.step() == 2  # then the one prepared meanwhile
    assert consumer.commits == [(1, {"a"}), (3, {"a", "b"})]
    assert store.read("Observation", "a")["meta"]["versionId"] == "2"  # type: ignore[index]


async def test_a_prepared_batch_with_a_poison_record_is_applied_record_by_record(
        store: SqlStore) -> None:
    consumer = Batches(store, [[record(0, "a")],
                               [record(1, "b"), record(2, "c", {"bad": 1}), record(3, "d")]])
    projector = HubProjector(consumer, store)  # type: ignore[arg-type]
    assert await projector.step() == 1
    assert await projector.step() == 3
    assert consumer.commits[-1] == (4, {"a", "b", "d"})
    assert projector.status()["poisoned"] == [f"Observation/c@{TP}:2"]


class FailingLookAhead(Batches):
    """A consumer whose second fetch (the look-ahead) fails."""

    async def getmany(self, max_wait: float = 1.0, max_records: int = 1000) -> list[Delivery]:
        if len(self.waits) == 1:
            self.waits.append(max_wait)
            raise BusError("Kafka fetch failed")
        return await super().getmany(max_wait, max_records)


async def test_a_failed_look_ahead_does_not_touch_the_batch_being_written(
        store: SqlStore) -> None:
    consumer = FailingLookAhead(store, [[record(0, "a")], [record(1, "b")]])
    projector = HubProjector(consumer, store)  # type: ignore[arg-type]
    assert await projector.step() == 1
    assert consumer.commits == [(1, {"a"})]
    assert await projector.step() == 1  # fetched by the step itself
    assert consumer.commits == [(1, {"a"}), (2, {"a", "b"})]


class Blocking:
    """The store, whose transactions wait for ``release`` once begun."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.dialect = store.dialect
        self.entered = threading.Event()
        self.release = threading.Event()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.store.transaction() as tx:
            self.entered.set()
            self.release.wait(10)
            yield tx


async def test_stopping_during_a_write_waits_for_it_and_commits_no_offset(
        store: SqlStore) -> None:
    consumer = Batches(store, [[record(0, "a")]])
    blocking = Blocking(store)
    projector = HubProjector(consumer, blocking)  # type: ignore[arg-type]
    step = asyncio.create_task(projector.step())
    assert await asyncio.to_thread(blocking.entered.wait, 10)
    step.cancel()
    await asyncio.sleep(0.05)
    assert not step.done()  # the write is still running: stopping waits for it
    blocking.release.set()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert store.read("Observation", "a") is not None
    assert consumer.commits == []  # redelivered after a restart: a no-op

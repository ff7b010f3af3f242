"""A record the store cannot take does not stop the hub projector: the rest of its batch is
applied, the offsets are committed, and the bad record is named (key and offset) in status."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from gateway.bus.base import Delivery, TopicPartition
from gateway.bus.projector import HubProjector
from gateway.store.sql import SqlStore


def observation(rid: str, code: object) -> Delivery:
    resource = {"resourceType": "Observation", "id": rid, "status": "final",
                "meta": {"versionId": "1", "lastUpdated": "2026-11-27T10:00:00.000Z"},
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}
    offset = int(rid[-1])
    return Delivery("gateway.fhir.Observation", 0, offset, f"Observation/{rid}",
                    orjson.dumps(resource), {})


class ListConsumer:
    """Hands out one batch, then nothing (a fake: the real broker is tested elsewhere)."""

    def __init__(self, batch: list[Delivery]) -> None:
        self.batches = [batch]
        self.committed: dict[TopicPartition, int] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, max_wait: float = 1.0, max_records: int = 1000) -> list[Delivery]:
        return self.batches.pop(0) if self.batches else []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def lag(self) -> dict[str, int]:
        return {}


async def test_a_poison_record_is_skipped_and_named_while_the_rest_of_its_batch_lands(
        tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    store.migrate()
    # an object where a code string belongs: the search index cannot hold it
    batch = [observation("obs1", "1988-5"), observation("obs2", {"bad": 1}),
             observation("obs3", "2276-4")]
    consumer = ListConsumer(batch)
    projector = HubProjector(consumer, store)  # type: ignore[arg-type]
    try:
        assert await projector.step() == 3
        assert store.read("Observation", "obs1") is not None
        assert store.read("Observation", "obs3") is not None
        assert projector.status()["poisoned_total"] == 1
        assert projector.status()["poisoned"] == [
            "Observation/obs2@" + str(TopicPartition("gateway.fhir.Observation", 0)) + ":2"]
        assert consumer.committed == {TopicPartition("gateway.fhir.Observation", 0): 4}
    finally:
        store.close()


class BrokenOnceConsumer(ListConsumer):
    """The first fetch fails with an error that is no GatewayError (a bug, a library's
    surprise); the projector must log it, count it and go on."""

    def __init__(self, batch: list[Delivery]) -> None:
        super().__init__(batch)
        self.calls = 0

    async def getmany(self, max_wait: float = 1.0, max_records: int = 1000) -> list[Delivery]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("unexpected")
        found = await super().getmany(max_wait, max_records)
        if not found:
            await asyncio.sleep(0.01)  # as a broker waits: the loop must get its turn
        return found


async def test_an_unexpected_error_in_a_step_is_counted_and_the_projector_goes_on(
        tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    store.migrate()
    consumer = BrokenOnceConsumer([observation("obs1", "1988-5")])
    projector = HubProjector(consumer, store, min_backoff=0.01)  # type: ignore[arg-type]
    await projector.start()
    try:
        for _ in range(200):
            if store.read("Observation", "obs1") is not None:
                break
            await asyncio.sleep(0.02)
        assert store.read("Observation", "obs1") is not None
        assert projector.status()["unexpected_failures"] == 1
    finally:
        await projector.stop()
        store.close()

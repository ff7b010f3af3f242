"""A record the store cannot take does not stop the hub projector: the rest of its batch is
applied, the offsets are committed, and the bad record is named (key and offset) in status."""

from __future__ import annotations

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
        assert projector.status()["poisoned"] == [
            "Observation/obs2@" + str(TopicPartition("gateway.fhir.Observation", 0)) + ":2"]
        assert consumer.committed == {TopicPartition("gateway.fhir.Observation", 0): 4}
    finally:
        store.close()

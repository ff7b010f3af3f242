"""Study cohorts at a hub: an edge (no cohorts of its own) relays a study's subjects
through a Kafka-protocol broker; the hub's projector writes them and the hub store keeps
the study's Group current, which the hub's relay then publishes on the Group topic."""

from __future__ import annotations

import orjson
import pytest

from gateway.bus.base import topic_for
from gateway.bus.components import make_projector, make_relay
from gateway.bus.kafka import KafkaBus
from gateway.bus.settings import BusSettings
from gateway.store.cohort import group_id
from gateway.store.sql import SqlStore
from tests.bus.busutil import collect, wait_until, write

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

STUDY = {"resourceType": "ResearchStudy", "id": "s1", "status": "active", "title": "CAR-T"}


def subject(status: str) -> dict[str, object]:
    return {"resourceType": "ResearchSubject", "id": "r1", "status": status,
            "study": {"reference": "ResearchStudy/s1"},
            "individual": {"reference": "Patient/p1"}}


async def test_the_hub_keeps_and_publishes_the_cohort_of_projected_subjects(
        kafka_settings: BusSettings, sqlite_url: str, hub_store: SqlStore) -> None:
    edge = SqlStore(sqlite_url, edge=True)
    edge.migrate()
    bus = KafkaBus(kafka_settings)
    try:
        write(edge, [STUDY, subject("on-study")])
        write(edge, [subject("off-study")], message_id="M2")
        assert edge.read("Group", group_id("s1")) is None  # an edge keeps no cohorts
        await make_relay(kafka_settings, edge, bus).drain()
        projector = make_projector(kafka_settings, hub_store, bus)
        await projector.start()

        def inactive() -> list[bool]:
            group = hub_store.read("Group", group_id("s1"))
            return [m["inactive"] for m in (group or {}).get("member", [])]

        assert await wait_until(lambda: inactive() == [True], deadline=30)
        await projector.stop()
        await make_relay(kafka_settings, hub_store, bus).drain()
        key = f"Group/{group_id('s1')}"
        records = await collect(bus, "cohort-reader",
                                [topic_for("Group", kafka_settings.topic_prefix)], 1,
                                keys={key})
        assert records, "the hub published no Group record"
        newest = max(records, key=lambda r: int(r.headers["version-id"]))
        assert newest.key == key and newest.headers["derived-from"] == "ResearchSubject"
        group = orjson.loads(newest.value or b"{}")
        assert group["meta"]["source"] == "urn:plagencell:cohort"
        assert [m["inactive"] for m in group["member"]] == [True]
    finally:
        await bus.stop()
        edge.close()

"""The AsyncAPI document is checked against what the relay actually sends, and a consumer
that is not ours (kafka-python) reads every topic and gets FHIR R4 JSON.

The records come from the nine shipped site samples through the real ingest (all seven
resource types), plus one delete (a tombstone), relayed to tansu."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT6, DRAFT7

from gateway import fhir
from gateway.bus.base import Delivery, topic_for
from gateway.bus.components import make_relay
from gateway.bus.kafka import KafkaBus
from gateway.bus.projector import RELAYED_TYPES
from gateway.bus.settings import BusSettings
from gateway.store.sql import SqlStore
from tests.bus.busutil import collect, ingest_site_samples
from tests.conftest import FHIR_SCHEMA, ROOT

with warnings.catch_warnings():  # kafka-python 3 reads its protocol JSON the legacy way
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer as ForeignConsumer

pytestmark = pytest.mark.kafka

ASYNCAPI = ROOT / "schemas" / "asyncapi.yaml"
FHIR_ID = "http://hl7.org/fhir/json-schema/4.0"


@pytest.fixture(scope="module")
def published(broker: Any, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[BusSettings, int]]:
    """Ingest the site samples at an edge, delete one Observation, relay everything."""
    prefix = f"c{uuid.uuid4().hex[:10]}"
    settings = BusSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix,
                           node_id="edge-test", kafka_session_timeout=2.0)
    store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('edge') / 'edge.db'}")
    store.migrate()
    ingest_site_samples(store)
    doomed = next(r for r in store.outbox_fetch(1000) if r.resource_type == "Observation")
    with store.transaction() as tx:
        tx.delete("Observation", doomed.resource_id)
    count = store.outbox_pending()

    async def relay() -> None:
        bus = KafkaBus(settings)
        await bus.ensure_topics(RELAYED_TYPES)
        await make_relay(settings, store, bus).drain()
        await bus.stop()

    asyncio.run(relay())
    assert store.outbox_pending() == 0
    store.close()
    yield settings, count


def topics_of(settings: BusSettings) -> list[str]:
    return [topic_for(t, settings.topic_prefix) for t in RELAYED_TYPES]


class Contract:
    """The AsyncAPI document, with its FHIR schema references resolvable offline."""

    def __init__(self, path: Path, fhir_schema: Path) -> None:
        self.doc = yaml.safe_load(path.read_text())
        self.registry = Registry().with_resources([
            (FHIR_ID, DRAFT6.create_resource(json.loads(fhir_schema.read_text()))),
            ("urn:asyncapi", DRAFT7.create_resource(self.doc)),
        ])

    def channel_for(self, topic: str) -> tuple[str, dict[str, Any]]:
        for name, channel in self.doc["channels"].items():
            pattern = re.escape(channel["address"]).replace(r"\{prefix\}", "[A-Za-z0-9._-]+")
            if re.fullmatch(pattern, topic):
                return name, channel
        raise AssertionError(f"no channel for topic {topic}")

    def message_for(self, record: Delivery) -> str:
        """The pointer of the channel's message that fits: a version or a tombstone."""
        _, channel = self.channel_for(record.topic)
        refs = [m["$ref"] for m in channel["messages"].values()]
        wanted = "Deleted" if record.value is None else "Version"
        [ref] = [r for r in refs if r.endswith(wanted)]
        return ref.lstrip("#")

    def errors(self, pointer: str, instance: object) -> list[str]:
        validator = Draft7Validator({"$ref": f"urn:asyncapi#{pointer}"}, registry=self.registry)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(instance)]

    def check(self, record: Delivery) -> list[str]:
        message = self.message_for(record)
        payload = json.loads(record.value) if record.value is not None else None
        return (self.errors(f"{message}/headers", record.headers)
                + self.errors(f"{message}/bindings/kafka/key", record.key)
                + self.errors(f"{message}/payload", payload))


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(ASYNCAPI, FHIR_SCHEMA)


async def test_every_record_the_relay_sends_matches_the_asyncapi_contract(
        published: tuple[BusSettings, int], contract: Contract) -> None:
    settings, count = published
    records = await collect(KafkaBus(settings), "contract", topics_of(settings), count)
    assert len(records) == count
    assert {contract.channel_for(r.topic)[0] for r in records} == set(RELAYED_TYPES)
    assert any(r.value is None for r in records)  # the tombstone is covered too
    problems = {f"{r.key}": errs for r in records if (errs := contract.check(r))}
    assert problems == {}


def test_the_contract_rejects_a_record_that_breaks_it(contract: Contract) -> None:
    bad = Delivery("gateway.fhir.Patient", 0, 0, "Observation/x", b'{"resourceType": "Patient",'
                   b' "id": "p1", "gender": "often"}', {"content-type": "text/plain"})
    problems = "\n".join(contract.check(bad))
    assert "content-type" in problems or "const" in problems
    assert "does not match" in problems  # the key is not Patient/<id>
    assert "meta" in problems  # versionId/lastUpdated/source are promised
    assert "'often'" in problems  # the FHIR schema itself: gender is a code of four values


def test_a_foreign_kafka_python_consumer_reads_every_value_as_fhir_r4_json(
        published: tuple[BusSettings, int], contract: Contract) -> None:
    settings, count = published
    consumer = ForeignConsumer(*topics_of(settings), bootstrap_servers=settings.kafka_bootstrap,
                               group_id="foreign-analytics", auto_offset_reset="earliest",
                               enable_auto_commit=False, session_timeout_ms=2000,
                               heartbeat_interval_ms=500)
    messages: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(messages) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                messages.extend(batch)
    finally:
        consumer.close()
    assert len(messages) == count
    for m in messages:
        headers = {k: v.decode() for k, v in m.headers}
        assert headers["content-type"] == "application/fhir+json; fhirVersion=4.0"
        if m.value is None:
            continue
        resource = json.loads(m.value)
        assert m.key.decode() == f"{resource['resourceType']}/{resource['id']}"
        fhir.validate(resource)  # the R4(B) models parse it
        pointer = f"/components/messages/{resource['resourceType']}Version/payload"
        assert contract.errors(pointer, resource) == []

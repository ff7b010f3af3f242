"""The Kafka bus against a real Kafka-protocol broker (tansu)."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from gateway.bus.base import CONTENT_TYPE, BusRecord, inbound_headers, topic_for
from gateway.bus.kafka import KafkaBus
from gateway.bus.settings import BusSettings
from gateway.errors import BusError
from tests.bus.busutil import collect, free_port

pytestmark = pytest.mark.kafka


async def test_a_published_record_comes_back_with_key_value_and_headers(
        kafka_settings: BusSettings) -> None:
    bus = KafkaBus(kafka_settings)
    topic = topic_for("Patient", kafka_settings.topic_prefix)
    headers = {"content-type": CONTENT_TYPE, "origin": "edge-a",
               **inbound_headers(site="ospedale-a", message_id="MSG0001")}
    await bus.publish([BusRecord(topic, "Patient/p1", b'{"resourceType":"Patient"}', headers),
                       BusRecord(topic, "Patient/p2", None, headers)])
    got = await collect(bus, "g", [topic], 2)
    await bus.stop()
    assert sorted((d.key, d.value) for d in got) == [
        ("Patient/p1", b'{"resourceType":"Patient"}'), ("Patient/p2", None)]
    assert all(d.headers == headers for d in got)


async def test_topics_are_created_at_start_with_the_configured_partitions(
        kafka_settings: BusSettings) -> None:
    bus = KafkaBus(kafka_settings)
    await bus.ensure_topics(["Specimen", "Observation"])
    await bus.ensure_topics(["Specimen"])  # existing topics are fine
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    await admin.start()
    try:
        topic = topic_for("Specimen", kafka_settings.topic_prefix)
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert len(described[0]["partitions"]) == kafka_settings.topic_partitions


async def test_every_version_of_one_key_is_read_back_in_publish_order(
        kafka_settings: BusSettings) -> None:
    bus = KafkaBus(kafka_settings)
    topic = topic_for("Observation", kafka_settings.topic_prefix)
    records = [BusRecord(topic, f"Observation/o{i % 7}", str(i).encode(), {})
               for i in range(700)]
    await bus.publish(records)
    got = await collect(bus, "g", [topic], 700)
    await bus.stop()
    per_key: dict[str, list[int]] = {}
    for d in got:
        per_key.setdefault(d.key, []).append(int(d.value or b"-1"))
    assert len(got) == 700
    assert all(values == sorted(values) for values in per_key.values())
    assert len({d.partition for d in got}) > 1  # keys spread, order kept per key


async def test_publishing_to_an_unreachable_broker_raises_a_retriable_bus_error(
        prefix: str) -> None:
    settings = BusSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}", topic_prefix=prefix,
                           kafka_request_timeout=1.0)
    bus = KafkaBus(settings)
    with pytest.raises(BusError) as caught:
        await bus.publish([BusRecord(topic_for("Patient", prefix), "Patient/p1", b"{}", {})])
    assert caught.value.retriable


async def test_the_consumer_reports_its_lag_per_partition_until_it_commits(
        kafka_settings: BusSettings) -> None:
    bus = KafkaBus(kafka_settings)
    topic = topic_for("Patient", kafka_settings.topic_prefix)
    await bus.publish([BusRecord(topic, f"Patient/p{i}", b"{}", {}) for i in range(30)])
    consumer = bus.subscribe("lag", [topic])
    await consumer.start()
    got = []
    while len(got) < 30:
        got.extend(await consumer.getmany(max_wait=0.5))
    assert sum(consumer.lag().values()) == 30
    await consumer.commit({d.tp: d.offset + 1 for d in got})
    assert sum(consumer.lag().values()) == 0
    assert all(name.startswith(f"{topic}[") for name in consumer.lag())
    await consumer.stop()
    await bus.stop()


async def test_a_consumer_started_while_kafka_is_down_joins_once_it_is_up(
        broker_factory: type, prefix: str) -> None:
    broker = broker_factory()
    settings = BusSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix,
                           kafka_request_timeout=2.0, kafka_session_timeout=2.0)
    consumer = KafkaBus(settings).subscribe("late", [topic_for("Patient", prefix)])
    with pytest.raises(BusError):
        await consumer.start()
    broker.start()
    bus = KafkaBus(settings)
    await bus.publish([BusRecord(topic_for("Patient", prefix), "Patient/p1", b"{}", {})])
    await consumer.start()  # the same member, second attempt
    got = []
    for _ in range(20):
        got += await consumer.getmany(max_wait=0.5)
        if got:
            break
    assert [d.key for d in got] == ["Patient/p1"]
    await consumer.stop()
    await bus.stop()

"""The Kafka bus (aiokafka): producer for the relay, consumer groups for the projector.

Ordering without idempotence: ``acks=all``, and aiokafka keeps at most one produce request
in flight per broker and mutes a partition while its batch is in flight (retries included),
which is Kafka's ``max.in.flight.requests.per.connection=1``. A publish that fails is
retried whole by the relay, so a record may appear twice on the log; consumers ignore a
``version-id`` they already hold. ``enable_idempotence`` stays off (tansu lacks it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from gateway.bus.base import BusRecord, Delivery, TopicPartition, topic_for
from gateway.bus.settings import BusSettings
from gateway.errors import BusError

log = logging.getLogger(__name__)

_TOPIC_EXISTS = TopicAlreadyExistsError.errno


def client_options(settings: BusSettings) -> dict[str, Any]:
    """Connection options shared by producer, consumer and admin client."""
    if not settings.kafka_bootstrap:
        raise BusError("no Kafka bootstrap servers configured")
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile, certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile)
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=password.get_secret_value() if password else None)
    return options


class KafkaBus:
    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._known_topics: set[str] = set()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect the producer; raises BusError (retriable) when the broker is unreachable."""
        async with self._lock:
            if self._producer is None:
                self._producer = await self._connect()

    async def _connect(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **client_options(self.settings), request_timeout_ms=self._timeout_ms(), acks="all",
            enable_idempotence=False, linger_ms=5, max_batch_size=512 * 1024,
            max_request_size=4 * 1024 * 1024)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise BusError("Kafka is unreachable", bootstrap=self.settings.kafka_bootstrap,
                           reason=type(exc).__name__) from exc
        return producer

    def _timeout_ms(self) -> int:
        return int(self.settings.kafka_request_timeout * 1000)

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def publish(self, records: Sequence[BusRecord]) -> None:
        if not records:
            return
        await self.start()
        await self._ensure_topic_names({r.topic for r in records} - self._known_topics)
        try:
            async with asyncio.timeout(self.settings.kafka_request_timeout):
                await self._send_all(records)
        except (KafkaError, TimeoutError) as exc:
            self._known_topics.clear()  # a restarted broker may have lost them
            raise BusError("Kafka did not acknowledge the batch", records=len(records),
                           topic=records[0].topic, reason=type(exc).__name__) from exc

    async def _send_all(self, records: Sequence[BusRecord]) -> None:
        assert self._producer is not None
        futures = []
        for record in records:
            headers = [(k, v.encode()) for k, v in record.headers.items()]
            futures.append(await self._producer.send(
                record.topic, key=record.key.encode(), value=record.value, headers=headers))
        await asyncio.gather(*futures)

    async def ensure_topics(self, resource_types: Iterable[str]) -> None:
        prefix = self.settings.topic_prefix
        await self._ensure_topic_names({topic_for(t, prefix) for t in resource_types})

    async def _ensure_topic_names(self, topics: set[str]) -> None:
        if not topics:
            return
        admin = AIOKafkaAdminClient(**client_options(self.settings),
                                    request_timeout_ms=self._timeout_ms())
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = sorted(topics - existing)
            if missing:
                await self._create(admin, missing)
        except KafkaError as exc:
            raise BusError("cannot create the Kafka topics", topics=",".join(sorted(topics)),
                           reason=type(exc).__name__) from exc
        finally:
            await admin.close()
        self._known_topics |= topics

    async def _create(self, admin: AIOKafkaAdminClient, topics: list[str]) -> None:
        new = [NewTopic(t, self.settings.topic_partitions, self.settings.topic_replication)
               for t in topics]
        response = await admin.create_topics(new)
        for topic, code, message in _topic_errors(response):
            if code not in (0, _TOPIC_EXISTS):
                raise BusError("Kafka refused to create a topic", topic=topic, code=code,
                               reason=message)
        log.info("created topics %s", ", ".join(topics))

    def subscribe(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        return KafkaConsumer(self.settings, group, topics)


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    out: list[tuple[str, int, str | None]] = []
    for entry in response.topic_errors:
        out.append((entry[0], entry[1], entry[2] if len(entry) > 2 else None))
    return out


class _ForgetOnRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """After a rebalance another member may have committed: re-read the group's offsets."""

    def __init__(self, committed: dict[KafkaTP, int]) -> None:
        self.committed = committed

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.committed.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.committed.clear()


class KafkaConsumer:
    """A consumer-group member with manual commits and a per-partition lag."""

    def __init__(self, settings: BusSettings, group: str, topics: Sequence[str]) -> None:
        self._settings, self._group, self._topics = settings, group, list(topics)
        self._committed: dict[KafkaTP, int] = {}
        self._consumer = self._new()
        self._used = False  # a started (or failed) aiokafka consumer cannot start again

    def _new(self) -> AIOKafkaConsumer:
        settings = self._settings
        consumer = AIOKafkaConsumer(
            **client_options(settings), group_id=self._group, enable_auto_commit=False,
            session_timeout_ms=int(settings.kafka_session_timeout * 1000),
            heartbeat_interval_ms=int(settings.kafka_session_timeout * 250),
            auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
            metadata_max_age_ms=10_000)  # a topic created after the hub started joins soon
        consumer.subscribe(self._topics, listener=_ForgetOnRebalance(self._committed))
        return consumer

    async def start(self) -> None:
        if self._used:
            self._committed.clear()
            self._consumer = self._new()
        self._used = True
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise BusError("Kafka is unreachable (consumer)", reason=type(exc).__name__) from exc

    async def stop(self) -> None:
        await self._consumer.stop()

    async def getmany(self, max_wait: float = 1.0, max_records: int = 1000) -> list[Delivery]:
        try:
            batches = await self._consumer.getmany(timeout_ms=int(max_wait * 1000),
                                                   max_records=max_records)
        except KafkaError as exc:
            raise BusError("Kafka fetch failed", reason=type(exc).__name__) from exc
        out: list[Delivery] = []
        for tp, messages in batches.items():
            await self._remember_committed(tp)
            out.extend(Delivery(m.topic, m.partition, m.offset, (m.key or b"").decode(),
                                m.value, {k: v.decode() for k, v in m.headers})
                       for m in messages)
        return out

    async def _remember_committed(self, tp: KafkaTP) -> None:
        if tp not in self._committed:
            self._committed[tp] = await self._consumer.committed(tp) or 0

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        native = {KafkaTP(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
        try:
            await self._consumer.commit(native)
        except CommitFailedError as exc:
            # The group rebalanced: the new owner re-reads from the last commit (harmless).
            raise BusError("offset commit refused after a rebalance",
                           reason=type(exc).__name__) from exc
        except KafkaError as exc:
            raise BusError("offset commit failed", reason=type(exc).__name__) from exc
        self._committed.update(native)

    def lag(self) -> dict[str, int]:
        out = {}
        for tp in sorted(self._consumer.assignment()):
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                committed = self._committed.get(tp, 0)
                out[f"{tp.topic}[{tp.partition}]"] = max(highwater - committed, 0)
        return out

    async def behind(self) -> dict[TopicPartition, int]:
        assigned = list(self._consumer.assignment())
        if not assigned:
            return {}
        try:
            ends = await self._consumer.end_offsets(assigned)
            for tp in assigned:
                await self._remember_committed(tp)
        except KafkaError as exc:
            raise BusError("Kafka offsets unavailable", reason=type(exc).__name__) from exc
        return {TopicPartition(tp.topic, tp.partition): end for tp, end in ends.items()
                if end > self._committed.get(tp, 0)}

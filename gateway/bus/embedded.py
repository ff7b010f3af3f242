"""The embedded durable bus: one machine, no Kafka (``gateway serve`` with no flags).

An append-only log table and a committed-offset table in a small database (SQLite file in
the data dir by default; any SQLAlchemy URL works, PostgreSQL included). Every topic has one
partition (0); an offset is the log row's id, so offsets grow within a topic but are not
dense. A publish is durable when its transaction commits. Consumers poll; in the same
process a publish wakes them at once. A group has one member (there is nothing to
rebalance on one machine); a restarted member resumes from the group's committed offsets,
so records it had not committed are delivered again, exactly as with Kafka.
Records older than the retention are pruned (time-based, like Kafka's ``retention.ms``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gateway.bus.base import BusRecord, Delivery, TopicPartition
from gateway.errors import BusError

_meta = sa.MetaData()
_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
bus_log = sa.Table(
    "bus_log", _meta,
    sa.Column("offset", _id, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("value", sa.LargeBinary, nullable=True),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Index("ix_bus_log_topic_offset", "topic", "offset"),
)
bus_offsets = sa.Table(
    "bus_offsets", _meta,
    sa.Column("group_id", sa.String(255), primary_key=True),
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("offset", _id, nullable=False),
)

_PRUNE_EVERY = 1000  # publishes


class EmbeddedBus:
    def __init__(self, url: str, *, retention_hours: float = 168.0,
                 poll_interval: float = 0.2) -> None:
        self.url = url
        self.retention = retention_hours * 3600
        self.poll_interval = poll_interval
        self._engine: sa.Engine | None = None
        self._published = asyncio.Event()
        self._publishes = 0
        self._starting = asyncio.Lock()
        # told after each publish: consumers in other processes (role all's projector)
        self.on_publish: list[Callable[[], None]] = []

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            raise BusError("the embedded bus is not started", url=self.url)
        return self._engine

    async def start(self) -> None:
        async with self._starting:
            if self._engine is None:
                self._engine = await asyncio.to_thread(_open, self.url)
                await self._run(self._prune)

    async def stop(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except SQLAlchemyError as exc:
            raise BusError("embedded bus database failure", url=self.url,
                           reason=type(exc).__name__) from exc

    async def publish(self, records: Sequence[BusRecord]) -> None:
        if not records:
            return
        await self._run(self._append, records)
        self.woken()
        for listener in self.on_publish:
            listener()
        self._publishes += 1
        if self._publishes % _PRUNE_EVERY == 0:
            await self._run(self._prune)

    def woken(self) -> None:
        """Records were published (here, or by another process that says so): consumers
        waiting in ``getmany`` read now rather than at their next poll."""
        self._published.set()
        self._published = asyncio.Event()

    def _append(self, records: Sequence[BusRecord]) -> None:
        now = time.time()
        rows = [{"topic": r.topic, "key": r.key, "value": r.value,
                 "headers": json.dumps(r.headers), "created": now} for r in records]
        with self.engine.begin() as conn:
            conn.execute(bus_log.insert(), rows)

    def _prune(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(bus_log.delete().where(bus_log.c.created < time.time() - self.retention))

    async def ensure_topics(self, resource_types: Iterable[str]) -> None:
        """Topics exist implicitly in the log."""

    def subscribe(self, group: str, topics: Sequence[str]) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, group, topics)

    async def wait_for_publish(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._published.wait(), seconds)
        except TimeoutError:
            pass


def _open(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    _meta.create_all(engine)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class EmbeddedConsumer:
    """The single member of a group over the embedded log."""

    def __init__(self, bus: EmbeddedBus, group: str, topics: Sequence[str]) -> None:
        self.bus = bus
        self.group = group
        self.topics = list(topics)
        self._position: dict[str, int] = {}
        self._committed: dict[str, int] = {}
        self._lag: dict[str, int] = {}

    async def start(self) -> None:
        await self.bus.start()
        self._committed = await self.bus._run(self._load_committed)
        self._position = dict(self._committed)

    async def stop(self) -> None:
        self._position = {}

    def _load_committed(self) -> dict[str, int]:
        q = sa.select(bus_offsets.c.topic, bus_offsets.c.offset).where(
            bus_offsets.c.group_id == self.group, bus_offsets.c.topic.in_(self.topics))
        with self.bus.engine.connect() as conn:
            found = {row.topic: int(row.offset) for row in conn.execute(q)}
        return {t: found.get(t, 0) for t in self.topics}

    async def getmany(self, max_wait: float = 1.0, max_records: int = 1000) -> list[Delivery]:
        deadline = time.monotonic() + max_wait
        while True:
            found: list[Delivery] = await self.bus._run(self._read, max_records)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                break
            await self.bus.wait_for_publish(min(remaining, self.bus.poll_interval))
        for d in found:
            self._position[d.topic] = d.offset + 1
        self._lag = await self.bus._run(self._count_lag)
        return found

    def _read(self, limit: int) -> list[Delivery]:
        clauses = [sa.and_(bus_log.c.topic == t, bus_log.c.offset >= p)
                   for t, p in self._position.items()]
        if not clauses:
            return []
        q = sa.select(bus_log).where(sa.or_(*clauses)).order_by(bus_log.c.offset).limit(limit)
        with self.bus.engine.connect() as conn:
            return [Delivery(r.topic, 0, int(r.offset), r.key, r.value, json.loads(r.headers))
                    for r in conn.execute(q)]

    def _count_lag(self) -> dict[str, int]:
        out = {}
        with self.bus.engine.connect() as conn:
            for topic, committed in self._committed.items():
                q = sa.select(sa.func.count()).where(bus_log.c.topic == topic,
                                                     bus_log.c.offset >= committed)
                out[f"{topic}[0]"] = int(conn.execute(q).scalar_one())
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        values = {tp.topic: offset for tp, offset in offsets.items()}
        await self.bus._run(self._store_offsets, values)
        self._committed.update(values)

    def _store_offsets(self, values: dict[str, int]) -> None:
        with self.bus.engine.begin() as conn:
            for topic, offset in values.items():
                where = sa.and_(bus_offsets.c.group_id == self.group, bus_offsets.c.topic == topic)
                done = conn.execute(bus_offsets.update().where(where).values(offset=offset))
                if done.rowcount == 0:
                    conn.execute(bus_offsets.insert().values(
                        group_id=self.group, topic=topic, offset=offset))

    def lag(self) -> dict[str, int]:
        return dict(self._lag)

    async def behind(self) -> dict[TopicPartition, int]:
        ends: dict[str, int] = await self.bus._run(self._ends)
        return {TopicPartition(topic, 0): end for topic, end in ends.items()
                if end > self._committed.get(topic, 0)}

    def _ends(self) -> dict[str, int]:
        q = (sa.select(bus_log.c.topic, sa.func.max(bus_log.c.offset))
             .where(bus_log.c.topic.in_(self.topics)).group_by(bus_log.c.topic))
        with self.bus.engine.connect() as conn:
            return {topic: int(last) + 1 for topic, last in conn.execute(q)}

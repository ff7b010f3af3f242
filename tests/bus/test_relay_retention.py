"""Outbox retention: the relay deletes published rows once they are older than the
retention, never an unpublished one, on both databases (real embedded bus)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, update

from gateway.bus.embedded import EmbeddedBus
from gateway.bus.relay import OutboxRelay
from gateway.store import schema as s
from gateway.store.sql import SqlStore
from tests.bus.busutil import patient, write


def outbox(store: SqlStore) -> list[tuple[str, str | None]]:
    o = s.outbox.c
    with store.engine.connect() as conn:
        return [(r.key, r.published_at) for r in conn.execute(
            select(o.key, o.published_at).order_by(o.seq))]


async def test_published_rows_older_than_the_retention_are_deleted(
        store: SqlStore, tmp_path: Path) -> None:
    bus = EmbeddedBus(f"sqlite:///{tmp_path / 'bus.db'}")
    relay = OutboxRelay(store, bus, retention_days=30, topics=["Patient"])
    await bus.start()
    write(store, [patient(i) for i in range(4)], message_id="OLD")
    assert await relay.drain_once() == 4
    with store.transaction() as tx:  # published 40 days ago
        tx.conn.execute(update(s.outbox).values(published_at="2026-10-18T00:00:00.000Z"))
    write(store, [patient(i, "male") for i in range(2)], message_id="NEW")
    await relay.drain_once()  # published now
    write(store, [patient(9)], message_id="WAITING")  # not published yet
    assert await relay.prune() == 4
    assert [key for key, _ in outbox(store)] == ["Patient/p0", "Patient/p1", "Patient/p9"]
    assert outbox(store)[-1][1] is None and store.outbox_pending() == 1
    assert relay.status()["pruned"] == 4
    await bus.stop()


async def test_retention_zero_keeps_every_row(store: SqlStore, tmp_path: Path) -> None:
    bus = EmbeddedBus(f"sqlite:///{tmp_path / 'bus.db'}")
    relay = OutboxRelay(store, bus, retention_days=0, topics=["Patient"])
    await bus.start()
    write(store, [patient(i) for i in range(3)])
    await relay.drain_once()
    with store.transaction() as tx:
        tx.conn.execute(update(s.outbox).values(published_at="2020-01-01T00:00:00.000Z"))
    assert await relay.prune() == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.outbox)).scalar() == 3
    await bus.stop()


def test_pruning_goes_in_batches_oldest_first(store: SqlStore) -> None:
    write(store, [patient(i) for i in range(7)])
    store.outbox_mark_published([r.seq for r in store.outbox_fetch()])
    with store.transaction() as tx:
        tx.conn.execute(update(s.outbox).values(published_at="2020-01-01T00:00:00.000Z"))
    assert store.outbox_prune("2026-01-01T00:00:00Z", limit=5) == 5
    assert [key for key, _ in outbox(store)] == ["Patient/p5", "Patient/p6"]
    assert store.outbox_prune("2026-01-01T00:00:00Z", limit=5) == 2
    assert store.outbox_prune("2026-01-01T00:00:00Z", limit=5) == 0

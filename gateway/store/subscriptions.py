"""What R4 Subscriptions (``gateway.subscriptions``) need from the store.

* ``subscription``: one row per Subscription: its JSON as the client sent it, its owner and
  the owner's data restriction (recorded like an export job's principal), the gateway's
  state (``status``, ``error``, ``failures``, ``next_attempt_ms``) and a version.
* ``subscription_change``: the change queue. A trigger on ``resource_version`` (migration
  0006) adds a row for each new version of a watched type in the transaction that writes
  it. ``take_changes`` reads the oldest rows; ``queue`` turns them into deliveries and
  deletes them in one transaction. Rows are deleted, not passed by a cursor: on PostgreSQL a
  transaction can commit a lower ``seq`` after a higher one, and a cursor would skip it.
* ``subscription_delivery``: each subscription's pending notifications in ``seq`` order,
  deleted once the receiver answered 2xx (at-least-once), kept across restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import delete, insert, select, update

from gateway.store import schema as s
from gateway.store.content import now_instant

if TYPE_CHECKING:
    from gateway.store.sql import SqlStore

_s, _c, _d = s.subscription.c, s.subscription_change.c, s.subscription_delivery.c
LIVE = ("requested", "active")


@dataclass
class SubscriptionRow:
    id: str
    res_type: str
    status: str
    client_id: str
    principal: dict[str, Any]
    content: dict[str, Any]
    version_id: int = 1
    last_updated: str = field(default_factory=now_instant)
    error: str | None = None
    failures: int = 0
    next_attempt_ms: int = 0

    def values(self) -> dict[str, Any]:
        return {"id": self.id, "res_type": self.res_type, "status": self.status,
                "client_id": self.client_id, "principal": orjson.dumps(self.principal).decode(),
                "content": orjson.dumps(self.content).decode(), "version_id": self.version_id,
                "last_updated": self.last_updated, "error": self.error,
                "failures": self.failures, "next_attempt_ms": self.next_attempt_ms}


@dataclass(frozen=True, slots=True)
class ChangeRow:
    seq: int
    res_type: str
    res_id: str
    version_id: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    seq: int
    subscription_id: str
    res_type: str
    res_id: str
    version_id: int
    queued_ms: int


def _row(r: Any) -> SubscriptionRow:
    return SubscriptionRow(r.id, r.res_type, r.status, r.client_id, orjson.loads(r.principal),
                           orjson.loads(r.content), r.version_id, r.last_updated, r.error,
                           r.failures, r.next_attempt_ms)


# -- subscriptions ---------------------------------------------------------------------------

def insert_subscription(store: SqlStore, row: SubscriptionRow) -> None:
    with store.transaction() as tx:
        tx.conn.execute(insert(s.subscription).values(**row.values()))


def get_subscription(store: SqlStore, id: str) -> SubscriptionRow | None:
    with store.engine.connect() as conn:
        found = conn.execute(select(s.subscription).where(_s.id == id)).first()
    return _row(found) if found is not None else None


def list_subscriptions(store: SqlStore, *, client_id: str | None = None,
                       statuses: Sequence[str] | None = None) -> list[SubscriptionRow]:
    """Subscriptions in id order, of one owner and/or in some statuses."""
    query = select(s.subscription).order_by(_s.id)
    if client_id is not None:
        query = query.where(_s.client_id == client_id)
    if statuses is not None:
        query = query.where(_s.status.in_(list(statuses)))
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(query).all()]


def replace_subscription(store: SqlStore, row: SubscriptionRow, *,
                         expected_version: int | None = None, drop_pending: bool = False
                         ) -> bool:
    """Write ``row`` as the next version (``row.version_id`` is set); False when the stored
    version is not ``expected_version`` (someone else changed it first). Turning it ``off``
    (or ``drop_pending``: its criteria changed) drops its pending notifications."""
    with store.transaction() as tx:
        current = tx.conn.execute(select(_s.version_id).where(_s.id == row.id)
                                  .with_for_update()).scalar_one_or_none()
        if current is None or (expected_version is not None and current != expected_version):
            return False
        row.version_id, row.last_updated = current + 1, now_instant()
        values = row.values()
        del values["id"]
        tx.conn.execute(update(s.subscription).where(_s.id == row.id).values(**values))
        if row.status == "off" or drop_pending:
            tx.conn.execute(delete(s.subscription_delivery)
                            .where(_d.subscription_id == row.id))
    return True


def record_attempt(store: SqlStore, id: str, *, failures: int, next_attempt_ms: int,
                   error: str | None) -> None:
    """A failed attempt that leaves the status as it is (no new version)."""
    with store.transaction() as tx:
        tx.conn.execute(update(s.subscription).where(_s.id == id).values(
            failures=failures, next_attempt_ms=next_attempt_ms, error=error))


def delete_subscription(store: SqlStore, id: str) -> bool:
    with store.transaction() as tx:
        gone = tx.conn.execute(delete(s.subscription).where(_s.id == id)).rowcount
        tx.conn.execute(delete(s.subscription_delivery).where(_d.subscription_id == id))
    return bool(gone)


# -- the change queue ------------------------------------------------------------------------

def take_changes(store: SqlStore, limit: int = 500) -> list[ChangeRow]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(s.subscription_change).order_by(_c.seq).limit(limit)).all()
    return [ChangeRow(r.seq, r.res_type, r.res_id, r.version_id, bool(r.deleted)) for r in rows]


def queue(store: SqlStore, changes: Sequence[ChangeRow],
          deliveries: Iterable[tuple[str, str, str, int]], queued_ms: int) -> None:
    """Add (subscription id, type, id, version) ``deliveries`` in order and delete the
    ``changes`` they came from, in one transaction."""
    rows = [{"subscription_id": sub, "res_type": t, "res_id": i, "version_id": v,
             "queued_ms": queued_ms} for sub, t, i, v in deliveries]
    with store.transaction() as tx:
        if rows:  # executemany inserts in list order: the seq order is the delivery order
            tx.conn.execute(insert(s.subscription_delivery), rows)
        seqs = [c.seq for c in changes]
        for start in range(0, len(seqs), 500):
            tx.conn.execute(delete(s.subscription_change)
                            .where(_c.seq.in_(seqs[start:start + 500])))


def pending(store: SqlStore, subscription_id: str, limit: int = 100) -> list[DeliveryRow]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(s.subscription_delivery)
                            .where(_d.subscription_id == subscription_id)
                            .order_by(_d.seq).limit(limit)).all()
    return [DeliveryRow(r.seq, r.subscription_id, r.res_type, r.res_id, r.version_id,
                        r.queued_ms) for r in rows]


def delivered(store: SqlStore, seqs: Sequence[int]) -> None:
    with store.transaction() as tx:
        tx.conn.execute(delete(s.subscription_delivery).where(_d.seq.in_(list(seqs))))

"""The cheap questions that metrics and alerts ask the store, every few seconds: is the
database there, how old is the oldest unpublished outbox row, when did each site last send,
and how did its messages of the last minutes end. Each is one indexed lookup or a range of
``ix_inbox_received`` no wider than the window asked for."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import func, literal, select

from gateway.store import schema as s

if TYPE_CHECKING:
    from gateway.store.sql import SqlStore

_i, _o = s.inbox.c, s.outbox.c


def ping(store: SqlStore) -> bool:
    """Whether the database answers a trivial query (False on any database error)."""
    try:
        with store.engine.connect() as conn:
            conn.execute(select(literal(1))).scalar_one()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not healthy", reported as such
        return False


def oldest_unpublished(store: SqlStore) -> str | None:
    """``created`` of the oldest outbox row not yet on the bus (``ix_outbox_pending``)."""
    query = (select(_o.created).where(_o.published_at.is_(None)).order_by(_o.seq).limit(1))
    with store.engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()


def last_received(store: SqlStore, sites: Iterable[str]) -> dict[str, str]:
    """The receive instant of each site's newest message (one ``ix_inbox_site`` lookup per
    site); sites that never sent are left out."""
    found: dict[str, str] = {}
    with store.engine.connect() as conn:
        for site in sites:
            newest = conn.execute(select(func.max(_i.received))
                                  .where(_i.site == site)).scalar_one_or_none()
            if newest:
                found[site] = newest
    return found


def outcomes_since(store: SqlStore, since: str) -> dict[str, Counter[str]]:
    """Per site, its messages received from ``since`` on, counted by status (processed,
    error, rejected…). Messages of no known site are left out."""
    query = (select(_i.site, _i.status, func.count())
             .where(_i.received >= since, _i.site.is_not(None))
             .group_by(_i.site, _i.status))
    counts: dict[str, Counter[str]] = {}
    with store.engine.connect() as conn:
        for site, status, n in conn.execute(query):
            counts.setdefault(site, Counter())[status] += int(n)
    return counts

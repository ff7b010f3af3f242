"""The outbox: one row per change in commit order, for the relay to publish on the bus.

On a hub an outbox row names its history row (the relay reads the content there): the
content is not written a third time. An edge keeps no history: its rows carry the content
(None: a delete), and stay after they are published: the outbox is the edge's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from gateway.store import schema as s
from gateway.store import statements as sql
from gateway.store.base import OutboxRow
from gateway.store.content import normalise_instant, now_instant
from gateway.store.session import Session

OUTBOX_COLUMNS = ("key", "res_type", "res_id", "version_id", "payload", "headers", "created")
_NAMES = ", ".join(f'"{c}"' for c in OUTBOX_COLUMNS)
_INSERT = (f"INSERT INTO outbox ({_NAMES}) "  # noqa: S608 - names from here
           f"VALUES ({', '.join('?' * len(OUTBOX_COLUMNS))})")
_COPY = f"COPY outbox ({_NAMES}) FROM STDIN"
_SELECT = (
    "SELECT o.seq, o.key, o.res_type, o.res_id, o.version_id,"
    " COALESCE(o.payload, v.content), o.headers, o.created"
    " FROM outbox o LEFT JOIN resource_version v ON v.res_type = o.res_type"
    " AND v.res_id = o.res_id AND v.version_id = o.version_id"
    " WHERE o.published_at IS NULL ORDER BY o.seq LIMIT ")
_FETCH = (_SELECT + "?", _SELECT + "%s")  # SQLite, PostgreSQL


def add(session: Session, rtype: str, rid: str, version: int,
        headers: dict[str, str] | None, data: bytes | None) -> None:
    """One row: a change of ``rtype/rid`` to ``version`` (``data``: its content)."""
    session.conn.execute(sql.INSERT_OUTBOX, {
        "key": f"{rtype}/{rid}", "res_type": rtype, "res_id": rid, "version_id": version,
        "payload": data if session.edge else None,
        "headers": orjson.dumps(headers or {}).decode(),
        "created": now_instant()})


def write_outbox(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """Rows of ``OUTBOX_COLUMNS`` in sequence order: COPY on PostgreSQL, one executemany
    on SQLite."""
    if not rows:
        return
    if not session.postgresql:
        session.conn.exec_driver_sql(_INSERT, rows)
        return
    with session.driver_cursor().copy(_COPY) as copy:
        for row in rows:
            copy.write_row(row)


def fetch(conn: Connection, postgresql: bool, limit: int) -> list[OutboxRow]:
    """Unpublished rows in commit order (sequence order). A row's payload is its own (an
    edge's rows, and rows written before revision 0003) or else the content of the history
    row it names; neither: a tombstone. On the driver's cursor: the relay asks for every
    commit."""
    rows = conn.exec_driver_sql(_FETCH[postgresql], (limit,)).all()
    headers: dict[str, dict[str, str]] = {}  # the rows of one message share theirs
    out = []
    for seq, key, rtype, rid, version, payload, box, created in rows:
        parsed = headers.get(box)
        if parsed is None:
            parsed = headers[box] = orjson.loads(box)
        out.append(OutboxRow(seq, key, rtype, rid, version,
                             bytes(payload) if payload is not None else None,
                             dict(parsed), created))
    return out


def mark_published(session: Session, seqs: Sequence[int]) -> None:
    if session.postgresql:
        session.conn.exec_driver_sql(
            "UPDATE outbox SET published_at = %s WHERE seq = ANY(%s)",
            (now_instant(), list(seqs)))
    else:
        marks = ", ".join("?" * len(seqs))
        session.conn.exec_driver_sql(
            f"UPDATE outbox SET published_at = ? WHERE seq IN ({marks})",  # noqa: S608
            (now_instant(), *seqs))


def prune(session: Session, before: str, limit: int) -> int:
    """Delete up to ``limit`` published rows published before ``before`` (an instant),
    oldest first; returns how many went."""
    o = s.outbox.c
    old = (select(o.seq).where(o.published_at.is_not(None),
                               o.published_at < normalise_instant(before))
           .order_by(o.seq).limit(limit))
    return int(session.conn.execute(s.outbox.delete().where(o.seq.in_(old))).rowcount)


def pending(conn: Connection) -> int:
    o = s.outbox.c
    return int(conn.execute(select(func.count()).select_from(s.outbox)
                            .where(o.published_at.is_(None))).scalar_one())

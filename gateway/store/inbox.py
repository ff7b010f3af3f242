"""The inbox: every inbound message as received, unique on (sender application, sender
facility, MSH-10), with its status, ACK, error and conversion report. The admin list's
page query is ``gateway.store.inbox_page``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway.errors import ConflictError
from gateway.store import schema as s
from gateway.store import statements as sql
from gateway.store.base import InboxRecord
from gateway.store.content import normalise_instant
from gateway.store.session import Session

InboxKey = tuple[str, str, str]  # sender application, sender facility, MSH-10


def add(session: Session, record: InboxRecord) -> int:
    """Persist an inbound message; a second one with the same key raises ConflictError and
    leaves the transaction usable."""
    values = insert_values(record)
    try:
        with session.conn.begin_nested():
            result = session.conn.execute(sql.INSERT_INBOX, values)
    except IntegrityError as exc:
        raise ConflictError("duplicate inbound message", sender=record.sender_facility,
                            control_id=record.control_id) from exc
    key = result.inserted_primary_key
    assert key is not None
    record.id = int(key[0])
    return record.id


def insert_many(session: Session, records: Sequence[InboxRecord]) -> list[int]:
    """``add`` without savepoints for each record, in one statement (multi-row INSERT …
    RETURNING, ids in the records' order)."""
    if not records:
        return []
    rows = session.conn.execute(sql.INSERT_INBOX_RETURNING,
                                [insert_values(r) for r in records]).all()
    for record, (inbox_id,) in zip(records, rows, strict=True):
        record.id = int(inbox_id)
    return [int(r.id) for r in records]  # type: ignore[arg-type]


def find_many(session: Session, keys: Sequence[InboxKey]) -> dict[InboxKey, InboxRecord]:
    """The stored records of ``keys`` (one statement per 300 keys)."""
    found: dict[InboxKey, InboxRecord] = {}
    wanted = set(keys)
    unique = sorted(wanted)
    for start in range(0, len(unique), 300):
        part = unique[start:start + 300]
        rows = session.conn.execute(sql.INBOX_BY_KEYS, {
            "apps": sorted({k[0] for k in part}), "facilities": sorted({k[1] for k in part}),
            "control_ids": sorted({k[2] for k in part})})
        for row in rows:
            key = (row.sender_application, row.sender_facility, row.control_id)
            if key in wanted:
                found[key] = record_of(row)
    return found


def update_record(session: Session, record: InboxRecord) -> None:
    if record.id is None:
        raise ValueError("inbox_update needs a record with an id")
    session.conn.execute(update(s.inbox).where(s.inbox.c.id == record.id)
                         .values(**_values(record)))


def query(status: str | None, site: str | None, since: str | None,
          after: int | None) -> Any:
    """Records in id order, filtered (None: any), after the id ``after``."""
    i = s.inbox.c
    statement = select(s.inbox).order_by(i.id)
    if status is not None:
        statement = statement.where(i.status == status)
    if site is not None:
        statement = statement.where(i.site == site)
    if since is not None:
        statement = statement.where(i.received >= normalise_instant(since))
    if after is not None:
        statement = statement.where(i.id > after)
    return statement


def record_of(row: Any) -> InboxRecord:
    return InboxRecord(
        sender_application=row.sender_application, sender_facility=row.sender_facility,
        control_id=row.control_id, raw=row.raw, received=row.received, transport=row.transport,
        site=row.site, message_type=row.message_type, status=row.status, ack=row.ack,
        error=row.error, report=orjson.loads(row.report) if row.report else None,
        resource_refs=orjson.loads(row.resource_refs), id=row.id, ack_ms=row.ack_ms,
        unmapped=[tuple(c) for c in orjson.loads(row.unmapped)] if row.unmapped else [])


def insert_values(record: InboxRecord) -> dict[str, Any]:
    return {"sender_application": record.sender_application,
            "sender_facility": record.sender_facility, "control_id": record.control_id,
            "raw": record.raw, "received": normalise_instant(record.received),
            "transport": record.transport, **_values(record)}


def _values(record: InboxRecord) -> dict[str, Any]:
    return {
        "site": record.site, "message_type": record.message_type, "status": record.status,
        "ack": record.ack, "error": record.error,
        "report": orjson.dumps(record.report).decode() if record.report is not None else None,
        "resource_refs": orjson.dumps(record.resource_refs).decode(),
        "ack_ms": record.ack_ms,
        "unmapped": orjson.dumps(record.unmapped).decode() if record.unmapped else None,
    }

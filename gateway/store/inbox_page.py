"""One page of the inbox for ``/admin/messages``: newest first, filtered, keyset-paged on
(received, id), without the raw message, the ACK or the report (no patient data, and a page
of 50 rows stays a few kilobytes whatever the messages made)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from sqlalchemy import and_, or_, select

from gateway.store import schema as s
from gateway.store.base import InboxEntry, InboxFilter
from gateway.store.content import normalise_instant

_i = s.inbox.c
COLUMNS = (_i.id, _i.sender_application, _i.sender_facility, _i.control_id, _i.received,
           _i.transport, _i.site, _i.message_type, _i.status, _i.error, _i.resource_refs)


def page_query(where: InboxFilter, before: tuple[str, int] | None, limit: int) -> Any:
    """Rows matching ``where``, strictly older than ``before`` (received, id)."""
    query = select(*COLUMNS).order_by(_i.received.desc(), _i.id.desc()).limit(limit)
    for column, value in ((_i.status, where.status), (_i.site, where.site),
                          (_i.control_id, where.control_id)):
        if value is not None:
            query = query.where(column == value)
    if where.message_type is not None:  # ORU matches ORU^R01…, ORU^R01 matches ORU^R01^ORU_R01
        query = query.where(or_(_i.message_type == where.message_type,
                                _i.message_type.startswith(where.message_type + "^",
                                                           autoescape=True)))
    if where.since is not None:
        query = query.where(_i.received >= normalise_instant(where.since))
    if where.until is not None:
        query = query.where(_i.received < normalise_instant(where.until))
    if before is not None:
        received, row_id = before
        query = query.where(or_(_i.received < received,
                                and_(_i.received == received, _i.id < row_id)))
    return query


def entry(row: Any) -> InboxEntry:
    refs = orjson.loads(row.resource_refs) if row.resource_refs else []
    return InboxEntry(
        id=row.id, sender_application=row.sender_application,
        sender_facility=row.sender_facility, control_id=row.control_id,
        received=row.received, transport=row.transport, site=row.site,
        message_type=row.message_type, status=row.status, error=row.error,
        resources=dict(Counter(str(ref).split("/", 1)[0] for ref in refs)))

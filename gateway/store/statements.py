"""The write path's statements, built once (SQLAlchemy then only binds parameters: no
per-call statement construction or cache-key work on the hot path)."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, insert, select, update

from gateway.store import schema as s

_r = s.resource.c
_KEY = (_r.res_type == bindparam("k_type")) & (_r.res_id == bindparam("k_id"))



class Current(NamedTuple):
    """A resource's current row as ``CURRENT`` reads it."""

    version_id: int
    last_updated: str
    deleted: bool
    content: bytes | None
    content_hash: str | None


CURRENT = select(_r.version_id, _r.last_updated, _r.deleted, _r.content,
                 _r.content_hash).where(_KEY)
CURRENT_FOR_UPDATE = CURRENT.with_for_update()
INSERT_RESOURCE = insert(s.resource)
UPDATE_RESOURCE = update(s.resource).where(_KEY)
INSERT_VERSION = insert(s.resource_version)
INSERT_OUTBOX = insert(s.outbox)
DELETE_INDEX: dict[str, Any] = {
    kind: delete(table).where(table.c.res_type == bindparam("k_type"),
                              table.c.res_id == bindparam("k_id"))
    for kind, table in s.INDEX_TABLES.items()}
_d = s.idx_date.c
TOUCH_LAST_UPDATED = update(s.idx_date).where(
    _d.res_type == bindparam("k_type"), _d.res_id == bindparam("k_id"),
    _d.param == "_lastUpdated")
_i = s.inbox.c
INSERT_INBOX = insert(s.inbox)
INSERT_INBOX_RETURNING = insert(s.inbox).returning(s.inbox.c.id, sort_by_parameter_order=True)
# each column IN (…), rows filtered after: an index search on both databases
INBOX_BY_KEYS = select(s.inbox).where(
    _i.sender_application.in_(bindparam("apps", expanding=True)),
    _i.sender_facility.in_(bindparam("facilities", expanding=True)),
    _i.control_id.in_(bindparam("control_ids", expanding=True)))
LINK_GET = select(s.pseudonym_link.c.pseudonym).where(s.pseudonym_link.c.key == bindparam("k"))
INSERT_LINK = insert(s.pseudonym_link)
_l = s.pseudonym_link.c
LINKS_GET = select(_l.key, _l.pseudonym).where(_l.key.in_(bindparam("keys", expanding=True)))

"""Search-index maintenance shared by every write path.

``update_index`` brings a resource's index rows from those of its previous content to
those of its new content, touching only the index tables whose rows change (a new version
that differs only in ``meta.lastUpdated`` updates one date row in place).
``reindex_page`` rebuilds the rows of a page of live resources from their content (after
an upgrade that changes search parameters, or when an edge's database becomes a hub's);
``SqlStore.reindex`` pages through the whole store with it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, tuple_

from gateway.store import schema as s
from gateway.store import statements as sql
from gateway.store.base import Resource
from gateway.store.content import loads
from gateway.store.rows import write_rows
from gateway.store.search.index import index_rows
from gateway.store.session import Key, Session

Rows = list[dict[str, Any]]
# index row values in table column order after (res_type, res_id), for plain-tuple writes
INDEX_COLUMNS = {kind: [c.name for c in table.columns][2:]
                 for kind, table in s.INDEX_TABLES.items()}


def update_index(session: Session, final: dict[Key, Resource | None],
                 previous: dict[Key, bytes | None]) -> None:
    """``final``: each key's newest content (None: deleted); ``previous``: its stored
    content before this write (None or absent: none). An edge store (no search index)
    writes nothing here."""
    if session.edge:
        return
    session.touched(final)
    deletes: dict[str, Rows] = {kind: [] for kind in s.INDEX_TABLES}
    inserts: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in s.INDEX_TABLES}
    touches: Rows = []
    for (rtype, rid), stored in final.items():
        content = previous.get((rtype, rid))
        new = index_rows(stored) if stored is not None else {}
        old = index_rows(loads(content)) if content else {}
        key = {"k_type": rtype, "k_id": rid}
        for kind in s.INDEX_TABLES:
            before, after = old.get(kind, []), new.get(kind, [])
            if before == after:
                continue
            if kind == "date" and only_last_updated_differs(before, after):
                (stamp,) = [row for row in after if row["param"] == "_lastUpdated"]
                touches.append({**key, "low": stamp["low"], "high": stamp["high"]})
                continue
            if before:
                deletes[kind].append(key)
            inserts[kind].extend(_tuples(rtype, rid, kind, after))
    for kind in s.INDEX_TABLES:
        if deletes[kind]:
            session.conn.execute(sql.DELETE_INDEX[kind], deletes[kind])
        if inserts[kind]:
            write_rows(session, s.INDEX_TABLES[kind], inserts[kind])
    if touches:
        session.conn.execute(sql.TOUCH_LAST_UPDATED, touches)


def _tuples(rtype: str, rid: str, kind: str, rows: Rows) -> list[tuple[Any, ...]]:
    columns = INDEX_COLUMNS[kind]
    return [(rtype, rid, *[row.get(c) for c in columns]) for row in rows]


def only_last_updated_differs(before: Rows, after: Rows) -> bool:
    def rest(rows: Rows) -> Rows:
        return [row for row in rows if row["param"] != "_lastUpdated"]

    stamps = [row for row in after if row["param"] == "_lastUpdated"]
    return len(stamps) == 1 and len(before) == len(after) and rest(before) == rest(after)


def reindex_page(session: Session, resource_type: str | None, after: Key | None,
                 limit: int) -> tuple[int, Key | None]:
    """Rebuild the index rows of up to ``limit`` live resources after the key ``after``.
    Returns (count, last key, or None when done)."""
    r = s.resource.c
    query = select(r.res_type, r.res_id, r.content).where(r.deleted.is_(False))
    if resource_type is not None:
        query = query.where(r.res_type == resource_type)
    if after is not None:
        query = query.where(tuple_(r.res_type, r.res_id) > after)
    rows = session.conn.execute(query.order_by(r.res_type, r.res_id).limit(limit)).all()
    by_type: dict[str, list[str]] = {}
    for rtype, rid, _ in rows:
        by_type.setdefault(rtype, []).append(rid)
    for rtype, ids in by_type.items():  # one DELETE per table and type for the page
        for table in s.INDEX_TABLES.values():
            session.conn.execute(delete(table).where(table.c.res_type == rtype,
                                                     table.c.res_id.in_(ids)))
    index: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in s.INDEX_TABLES}
    for rtype, rid, content in rows:
        for kind, kind_rows in index_rows(loads(content)).items():
            index[kind].extend(_tuples(rtype, rid, kind, kind_rows))
    for kind, tuples in index.items():
        write_rows(session, s.INDEX_TABLES[kind], tuples)
    last = (rows[-1][0], rows[-1][1]) if len(rows) == limit else None
    return len(rows), last

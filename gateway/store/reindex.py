"""Index maintenance shared by every write path: bring a resource's search-index rows from
those of its previous content to those of its new content, touching only the index tables
whose rows change (a new version that differs only in ``meta.lastUpdated`` updates one
date row in place)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.store import schema as s
from gateway.store import statements as sql
from gateway.store.base import Resource
from gateway.store.cohort import COHORT_TYPES
from gateway.store.content import loads
from gateway.store.project import write_rows
from gateway.store.search.index import index_rows

if TYPE_CHECKING:
    from gateway.store.tx import SqlTransaction

Key = tuple[str, str]
Rows = list[dict[str, Any]]
# index row values in table column order after (res_type, res_id), for plain-tuple writes
INDEX_COLUMNS = {kind: [c.name for c in table.columns][2:]
                 for kind, table in s.INDEX_TABLES.items()}


def reindex(tx: SqlTransaction, final: dict[Key, Resource | None],
            previous: dict[Key, bytes | None]) -> None:
    """``final``: each key's newest content (None: deleted); ``previous``: its stored
    content before this write (None or absent: none). An edge store (no search index)
    writes nothing here."""
    if tx.store.edge:
        return
    tx.cohort_keys.update(key for key in final if key[0] in COHORT_TYPES)
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
            columns = INDEX_COLUMNS[kind]
            inserts[kind].extend((rtype, rid, *[row.get(c) for c in columns]) for row in after)
    for kind in s.INDEX_TABLES:
        if deletes[kind]:
            tx.conn.execute(sql.DELETE_INDEX[kind], deletes[kind])
        if inserts[kind]:
            write_rows(tx, s.INDEX_TABLES[kind], inserts[kind])
    if touches:
        tx.conn.execute(sql.TOUCH_LAST_UPDATED, touches)


def only_last_updated_differs(before: Rows, after: Rows) -> bool:
    def rest(rows: Rows) -> Rows:
        return [row for row in rows if row["param"] != "_lastUpdated"]

    stamps = [row for row in after if row["param"] == "_lastUpdated"]
    return len(stamps) == 1 and len(before) == len(after) and rest(before) == rest(after)

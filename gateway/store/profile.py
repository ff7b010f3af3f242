"""What a database keeps: the hub's full store, or the edge's lean one.

An edge serves no FHIR API: it needs the current version of each resource (to tell a
changed resource from a resend) and the outbox (what the relay still has to publish), and
nothing the API reads. So an edge store writes

* no search-index rows (about 20 per resource: most of an ingest transaction's cost),
* no version-history rows: the outbox row of each version carries its content and stays
  after it is published, so the outbox is the edge's history,
* no entries in the API's own indexes of ``resource`` (``ix_resource_live``,
  ``ix_resource_type_updated``): dropped, since every entry lands at a random place.

On the hub (and ``all``), every version is in ``resource_version`` and an outbox row only
names its version (the relay reads the content there): the content is written twice, not
three times.

The database records which it is (``store_setting.profile``: ``hub`` | ``edge``), so a node
can change role: a hub database opened by an edge drops what an edge does not keep; an
edge database opened by a hub gets its indexes, its history (from the outbox, and the
current rows) and its search index built, in the migration's transaction.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Index, select, update

from gateway.store import schema as s
from gateway.store.indexing import reindex_page
from gateway.store.session import Session

log = logging.getLogger(__name__)

HUB, EDGE = "hub", "edge"
# the API's indexes on ``resource``, which an edge does not keep
API_INDEXES: list[Index] = [ix for ix in s.resource.indexes
                            if ix.name in ("ix_resource_live", "ix_resource_type_updated")]


def recorded(conn: Connection) -> str:
    c = s.store_setting.c
    value = conn.execute(select(c.value).where(c.name == "profile")).scalar_one_or_none()
    return value or HUB


def record(conn: Connection, profile: str) -> None:
    c = s.store_setting.c
    if conn.execute(update(s.store_setting).where(c.name == "profile")
                    .values(value=profile)).rowcount == 0:
        conn.execute(s.store_setting.insert().values(name="profile", value=profile))


def become_edge(conn: Connection) -> None:
    """Drop what an edge does not keep (its history rows stay: they are what they are)."""
    if conn.execute(select(s.resource.c.res_id).limit(1)).first() is not None:
        log.warning("this database becomes an edge's: dropping its search index")
    for table in s.INDEX_TABLES.values():
        conn.execute(table.delete())
    for index in API_INDEXES:
        index.drop(conn, checkfirst=True)
    record(conn, EDGE)


def become_hub(session: Session) -> None:
    """Build what a hub keeps from an edge's database: the API's indexes, the version
    history (every version still in the outbox, and each current row) and the search
    index of every live resource."""
    conn = session.conn
    log.warning("this database was an edge's: building its history and search index")
    for index in API_INDEXES:
        index.create(conn, checkfirst=True)
    ignore = "INSERT" if session.postgresql else "INSERT OR IGNORE"
    conflict = " ON CONFLICT DO NOTHING" if session.postgresql else ""
    columns = "res_type, res_id, version_id, last_updated, deleted, content"
    conn.exec_driver_sql(  # every version the outbox still holds (edges keep them all)
        f"{ignore} INTO resource_version ({columns}) "  # noqa: S608 - names from here
        "SELECT res_type, res_id, version_id, created, payload IS NULL, payload FROM outbox"
        f"{conflict}")
    conn.exec_driver_sql(  # and the current version of every resource
        f"{ignore} INTO resource_version ({columns}) "  # noqa: S608
        f"SELECT {columns} FROM resource{conflict}")
    done, after = 0, None
    while True:
        count, after = reindex_page(session, None, after, 500)
        done += count
        if after is None:
            break
    record(conn, HUB)
    log.warning("search index built for %d resources", done)

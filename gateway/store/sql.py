"""``SqlStore``: the Store protocol on SQLite and PostgreSQL (SQLAlchemy 2 Core, sync).

Thread-safe: every call takes a pooled connection. Writes go through ``transaction()``
(one database transaction; SQLite ``BEGIN IMMEDIATE``); reads open a short read
transaction each. Driver errors leave this module as ``gateway.errors.StoreError``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import Gone
from gateway.security.access import Restriction
from gateway.store import inbox_page, profile
from gateway.store import schema as s
from gateway.store.base import (
    InboxEntry,
    InboxFilter,
    InboxRecord,
    OutboxRow,
    Resource,
    SearchResult,
    Version,
)
from gateway.store.budget import Budget, bounded
from gateway.store.checkpoint import Checkpointer
from gateway.store.content import loads, normalise_instant, now_instant
from gateway.store.engine import make_engine, normalise_url, translate, translated
from gateway.store.restrict import visible, visible_any
from gateway.store.tx import SqlTransaction

T = TypeVar("T")
log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ANALYZE_AFTER = 5000  # rows loaded by one bulk_put before statistics are refreshed


class SqlStore:
    """``edge=True`` is the edge's lean store (``gateway.store.profile``): no search index,
    no version history, no API indexes; the hub keeps them for what the edges relay. The
    database remembers which it is: opening it as the other builds or drops what differs
    (``migrate``). ``edge=None`` (command-line tools): whatever the database is."""

    def __init__(self, url: str, *, pool_size: int = 8, edge: bool | None = False) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.dialect = normalise_url(url).get_backend_name()
        self.edge = bool(edge)
        self._follow_database = edge is None
        self._bulk_rows = self._analyzed_rows = 0
        self._checkpointer: Checkpointer | None = None
        self._checkpointer_guard = threading.Lock()
        self._closers: list[Callable[[], None]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @translated
    def migrate(self) -> None:
        """Upgrade the schema to the newest Alembic revision (concurrent callers wait)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._write_connection() as conn, conn.begin():
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('gateway-migrate'))"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            tx = SqlTransaction(conn, self)
            self._settle_profile(tx)
            if not self.edge:
                from gateway.store.cohort import refresh_all_cohorts

                refresh_all_cohorts(tx)

    def _settle_profile(self, tx: SqlTransaction) -> None:
        """Make the database what this store is (or, following it, learn what it is)."""
        was = profile.recorded(tx.conn)
        if self._follow_database:
            self.edge = was == profile.EDGE
        elif self.edge and was != profile.EDGE:
            profile.become_edge(tx.conn)
        elif not self.edge and was == profile.EDGE:
            profile.become_hub(tx)

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the store closes: connections opened outside the engine's
        pool (the FHIR API's fast reads) are not closed by ``engine.dispose()``."""
        self._closers.append(closer)

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for closer in closers:
            closer()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.engine.dispose()

    @translated
    def optimize(self) -> None:
        """Refresh planner statistics after a bulk load (PostgreSQL ``VACUUM ANALYZE``,
        SQLite ``ANALYZE``), so searches pick the right indexes from the start."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql("VACUUM ANALYZE")
            else:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()

    @contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        """A write transaction, committed when the block exits cleanly."""
        try:
            with self._write_connection() as conn, conn.begin():
                tx = SqlTransaction(conn, self)
                yield tx
                self._derive(tx)
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def retrying(self, work: Callable[[SqlTransaction], T], *, attempts: int = 5) -> T:
        """Run ``work`` in a transaction, again (with back-off) when it loses a race."""
        for attempt in range(attempts):
            try:
                with self.transaction() as tx:
                    return work(tx)
            except Exception as exc:
                if not getattr(exc, "retriable", False) or attempt == attempts - 1:
                    raise
                time.sleep(0.01 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _derive(self, tx: SqlTransaction) -> None:
        """Before the commit: what a hub derives from the writes of the transaction (the
        study cohorts, ``gateway.store.cohort``)."""
        if tx.cohort_keys and not self.edge:
            from gateway.store.cohort import refresh_cohorts

            refresh_cohorts(tx)

    def _write_connection(self) -> Connection:
        conn = self.engine.connect()
        if self.dialect == "sqlite":
            conn.execution_options(sqlite_begin="IMMEDIATE")
            if self._checkpointer is None:
                self._start_checkpointer()
        return conn

    def _start_checkpointer(self) -> None:
        database = self.engine.url.database
        if not database or database == ":memory:":
            return
        with self._checkpointer_guard:
            if self._checkpointer is None:
                self._checkpointer = Checkpointer(str(Path(database).resolve())).start()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    # -- resources ----------------------------------------------------------------------------

    def read(self, resource_type: str, id: str, *,
             restrict: Restriction | None = None) -> Resource | None:
        """The current version; None if there never was one; Gone if it is deleted.
        ``restrict``: None also when the caller may not see it (deleted included)."""
        r = s.resource.c
        query = select(r.deleted, r.content, r.version_id).where(
            r.res_type == resource_type, r.res_id == id)
        if restrict is not None:
            query = query.where(visible(restrict, resource_type, r.res_id))
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        if row.deleted:
            raise Gone("resource deleted", resource=f"{resource_type}/{id}",
                       version=row.version_id)
        return loads(row.content)

    def vread(self, resource_type: str, id: str, version_id: int, *,
              restrict: Restriction | None = None) -> Resource | None:
        """One version; ``restrict``: None unless the resource is visible now (its current
        version decides for all its versions; a deleted resource is not visible)."""
        v = s.resource_version.c
        query = select(v.deleted, v.content).where(
            v.res_type == resource_type, v.res_id == id, v.version_id == version_id)
        if restrict is not None:
            query = query.where(visible(restrict, resource_type, v.res_id))
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        if row.deleted:
            raise Gone("version is a delete", resource=f"{resource_type}/{id}",
                       version=version_id)
        return loads(row.content)

    def history_versions(self, resource_type: str | None, id: str | None, *,
                         since: str | None = None, before: str | None = None,
                         count: int = 50, restrict: Restriction | None = None
                         ) -> list[Version]:
        """Newest first; ``since`` inclusive, ``before`` exclusive (for paging);
        ``restrict``: only the versions of resources visible now."""
        v = s.resource_version.c
        query = select(v.res_type, v.res_id, v.version_id, v.last_updated, v.deleted, v.content)
        if resource_type is not None:
            query = query.where(v.res_type == resource_type)
        if id is not None:
            query = query.where(v.res_id == id)
        if since is not None:
            query = query.where(v.last_updated >= normalise_instant(since))
        if before is not None:
            query = query.where(v.last_updated < normalise_instant(before))
        if restrict is not None:
            query = query.where(visible(restrict, resource_type, v.res_id)
                                if resource_type is not None
                                else visible_any(restrict, v.res_type, v.res_id))
        query = query.order_by(v.last_updated.desc(), v.version_id.desc()).limit(count)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [Version(r.res_type, r.res_id, r.version_id, r.last_updated, r.deleted,
                        loads(r.content) if r.content is not None else None) for r in rows]

    def history(self, resource_type: str | None, id: str | None, *, since: str | None = None,
                count: int = 50, restrict: Restriction | None = None) -> list[Resource]:
        """Versions newest first; a delete appears as ``{resourceType, id, meta}`` only
        (use ``history_versions`` to tell deletes apart)."""
        return [version.resource or _tombstone_stub(version)
                for version in self.history_versions(resource_type, id, since=since,
                                                     count=count, restrict=restrict)]

    # -- search -------------------------------------------------------------------------------

    def search(self, resource_type: str, params: list[tuple[str, str]], *,
               budget: Budget | None = None, **options: Any) -> SearchResult:
        """``budget``: stop in the database when it is spent or cancelled (``Cancelled``)."""
        with self._read() as conn:
            if budget is None:
                return self.search_on(conn, resource_type, params, **options)
            with bounded(conn, self.dialect, budget):
                return self.search_on(conn, resource_type, params, **options)

    def search_on(self, conn: Connection, resource_type: str, params: list[tuple[str, str]],
                  **options: Any) -> SearchResult:
        from gateway.store.search.query import run_search

        try:
            return run_search(conn, self.dialect, resource_type, params, **options)
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def bulk_put(self, resources: Sequence[Resource], *, outbox: bool = False,
                 chunk: int = 2000) -> int:
        """Load many resources fast (imports, benchmarks); see ``gateway.store.bulk``."""
        from gateway.store.bulk import bulk_put

        try:
            with self._write_connection() as conn, conn.begin():
                tx = SqlTransaction(conn, self)
                created = bulk_put(tx, resources, outbox=outbox, chunk=chunk)
                self._derive(tx)
            self._bulk_rows += created
            if self._bulk_rows >= max(ANALYZE_AFTER, 2 * self._analyzed_rows):
                self._analyze()  # at 5k, then each time the loaded volume doubles
                self._analyzed_rows = self._bulk_rows
            return created
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def reindex(self, resource_type: str | None = None, *, batch: int = 500) -> int:
        """Rebuild the search index of every live resource (after an upgrade that changes
        search parameters), one transaction per batch; returns how many were indexed."""
        from gateway.store.bulk import reindex

        done, after = 0, None
        while True:
            with self.transaction() as tx:
                count, after = reindex(tx, resource_type, after, batch)
            done += count
            if after is None:
                return done

    def _analyze(self) -> None:
        """Quick planner statistics after a big load (sampled on both databases)."""
        with self._write_connection() as conn, conn.begin():
            if self.dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")

    # -- inbox --------------------------------------------------------------------------------

    def inbox_find(self, sender_application: str, sender_facility: str,
                   control_id: str) -> InboxRecord | None:
        i = s.inbox.c
        rows = self._inbox_rows(select(s.inbox).where(
            i.sender_application == sender_application, i.sender_facility == sender_facility,
            i.control_id == control_id))
        return rows[0] if rows else None

    def inbox_get(self, id: int) -> InboxRecord | None:
        rows = self._inbox_rows(select(s.inbox).where(s.inbox.c.id == id))
        return rows[0] if rows else None

    def inbox_list(self, *, status: str | None = None, site: str | None = None,
                   since: str | None = None, limit: int = 100) -> list[InboxRecord]:
        return self._inbox_rows(_inbox_query(status, site, since, None).limit(limit))

    def inbox_iter(self, *, status: str | None = None, site: str | None = None,
                   since: str | None = None) -> Iterator[InboxRecord]:
        """All matching records in id order, fetched in pages of 200."""
        after = None
        while True:
            page = self._inbox_rows(_inbox_query(status, site, since, after).limit(200))
            yield from page
            if len(page) < 200:
                return
            after = page[-1].id

    def inbox_page(self, where: InboxFilter, *, before: tuple[str, int] | None = None,
                   limit: int = 50) -> list[InboxEntry]:
        with self._read() as conn:
            return [inbox_page.entry(row)
                    for row in conn.execute(inbox_page.page_query(where, before, limit))]

    def _inbox_rows(self, query: Any) -> list[InboxRecord]:
        with self._read() as conn:
            return [_inbox_record(row) for row in conn.execute(query)]

    # -- outbox -------------------------------------------------------------------------------

    def outbox_fetch(self, limit: int = 500) -> Sequence[OutboxRow]:
        """Unpublished rows in commit order (sequence order). A row's payload is its own
        (an edge's rows, and rows written before revision 0003) or else the content of the
        history row it names; neither: a tombstone. On the driver's cursor: the relay asks
        for every commit."""
        with self._read() as conn:
            rows = conn.exec_driver_sql(_OUTBOX_FETCH[self.dialect == "postgresql"],
                                        (limit,)).all()
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

    def outbox_mark_published(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self.transaction() as tx:
            if self.dialect == "postgresql":
                tx.conn.exec_driver_sql(
                    "UPDATE outbox SET published_at = %s WHERE seq = ANY(%s)",
                    (now_instant(), list(seqs)))
            else:
                marks = ", ".join("?" * len(seqs))
                tx.conn.exec_driver_sql(
                    f"UPDATE outbox SET published_at = ? WHERE seq IN ({marks})",  # noqa: S608
                    (now_instant(), *seqs))

    def outbox_prune(self, before: str, limit: int = 5000) -> int:
        """Delete up to ``limit`` published rows published before ``before`` (an instant),
        oldest first; returns how many went."""
        o = s.outbox.c
        old = (select(o.seq).where(o.published_at.is_not(None),
                                   o.published_at < normalise_instant(before))
               .order_by(o.seq).limit(limit))
        with self.transaction() as tx:
            return int(tx.conn.execute(s.outbox.delete().where(o.seq.in_(old))).rowcount)

    def outbox_pending(self) -> int:
        o = s.outbox.c
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(s.outbox)
                                    .where(o.published_at.is_(None))).scalar_one())


_OUTBOX_SELECT = (
    "SELECT o.seq, o.key, o.res_type, o.res_id, o.version_id,"
    " COALESCE(o.payload, v.content), o.headers, o.created"
    " FROM outbox o LEFT JOIN resource_version v ON v.res_type = o.res_type"
    " AND v.res_id = o.res_id AND v.version_id = o.version_id"
    " WHERE o.published_at IS NULL ORDER BY o.seq LIMIT ")
_OUTBOX_FETCH = (_OUTBOX_SELECT + "?", _OUTBOX_SELECT + "%s")  # SQLite, PostgreSQL


def _tombstone_stub(version: Version) -> Resource:
    return {"resourceType": version.resource_type, "id": version.id,
            "meta": {"versionId": str(version.version_id), "lastUpdated": version.last_updated}}


def _inbox_query(status: str | None, site: str | None, since: str | None,
                 after: int | None) -> Any:
    i = s.inbox.c
    query = select(s.inbox).order_by(i.id)
    if status is not None:
        query = query.where(i.status == status)
    if site is not None:
        query = query.where(i.site == site)
    if since is not None:
        query = query.where(i.received >= normalise_instant(since))
    if after is not None:
        query = query.where(i.id > after)
    return query


def _inbox_record(row: Any) -> InboxRecord:
    return InboxRecord(
        sender_application=row.sender_application, sender_facility=row.sender_facility,
        control_id=row.control_id, raw=row.raw, received=row.received, transport=row.transport,
        site=row.site, message_type=row.message_type, status=row.status, ack=row.ack,
        error=row.error, report=orjson.loads(row.report) if row.report else None,
        resource_refs=orjson.loads(row.resource_refs), id=row.id, ack_ms=row.ack_ms,
        unmapped=[tuple(c) for c in orjson.loads(row.unmapped)] if row.unmapped else [])

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

from sqlalchemy import Connection, select, text
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import Gone
from gateway.security.access import Restriction
from gateway.store import bulk, cohort, inbox, inbox_page, outbox, profile, projection
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
from gateway.store.content import loads, normalise_instant
from gateway.store.engine import make_engine, normalise_url, translate, translated
from gateway.store.indexing import reindex_page
from gateway.store.rawread import RawReader
from gateway.store.restrict import visible, visible_any
from gateway.store.search.query import run_search
from gateway.store.session import Session
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
            self._settle_profile(conn)
            if not self.edge:
                cohort.refresh_all_cohorts(SqlTransaction(self._session(conn)))

    def _session(self, conn: Connection) -> Session:
        return Session(conn, self.dialect, edge=self.edge)

    def _settle_profile(self, conn: Connection) -> None:
        """Make the database what this store is (or, following it, learn what it is)."""
        was = profile.recorded(conn)
        if self._follow_database:
            self.edge = was == profile.EDGE
        elif self.edge and was != profile.EDGE:
            profile.become_edge(conn)
        elif not self.edge and was == profile.EDGE:
            profile.become_hub(self._session(conn))

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the store closes: connections opened outside the engine's
        pool (the raw readers') are not closed by ``engine.dispose()``."""
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
                tx = SqlTransaction(self._session(conn))
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
        if tx.session.cohort_keys and not self.edge:
            cohort.refresh_cohorts(tx)

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

    def raw_reader(self) -> RawReader:
        """A reader of stored JSON bytes by id (``gateway.store.rawread``), closed with the
        store."""
        reader = RawReader(self.engine)
        self.on_close(reader.close)
        return reader

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
                return self._search_on(conn, resource_type, params, **options)
            with bounded(conn, self.dialect, budget):
                return self._search_on(conn, resource_type, params, **options)

    def _search_on(self, conn: Connection, resource_type: str, params: list[tuple[str, str]],
                  **options: Any) -> SearchResult:
        try:
            return run_search(conn, self.dialect, resource_type, params, **options)
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def bulk_put(self, resources: Sequence[Resource], *, outbox: bool = False,
                 chunk: int = 2000) -> int:
        """Load many resources fast (imports, benchmarks; ``gateway.store.bulk``): new ones
        with multi-row writes, stored ones through ``put``. Returns how many were new."""
        created = 0
        try:
            with self._write_connection() as conn, conn.begin():
                tx = SqlTransaction(self._session(conn))
                for start in range(0, len(resources), chunk):
                    part = resources[start:start + chunk]
                    held = bulk.existing(tx.session, part)
                    for resource in part:
                        if (resource["resourceType"], resource["id"]) in held:
                            tx.put_resource(resource, outbox=outbox)
                    fresh = bulk.dedupe([r for r in part
                                         if (r["resourceType"], r["id"]) not in held])
                    bulk.insert_new(tx.session, fresh, outbox=outbox)
                    created += len(fresh)
                self._derive(tx)
            self._bulk_rows += created
            if self._bulk_rows >= max(ANALYZE_AFTER, 2 * self._analyzed_rows):
                self._analyze()  # at 5k, then each time the loaded volume doubles
                self._analyzed_rows = self._bulk_rows
            return created
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def reindex(self, resource_type: str | None = None, *, page: int = 500) -> int:
        """Rebuild the search index of every live resource (after an upgrade that changes
        search parameters), one transaction per ``page`` resources; returns how many were
        indexed."""
        done, after = 0, None
        while True:
            with self.transaction() as tx:
                count, after = reindex_page(tx.session, resource_type, after, page)
            done += count
            if after is None:
                return done

    # -- projection ---------------------------------------------------------------------------

    def prepare_versions(self, resources: Sequence[Resource]) -> projection.Prepared:
        """The work of ``Transaction.apply_versions`` that needs no database (normalised
        content, hashes, index rows; on PostgreSQL the COPY data), done before the
        transaction: the projector prepares the next batch while this one is written."""
        return projection.prepare_versions(
            resources, copy=self.dialect == "postgresql" and projection.copy_available())

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
        return self._inbox_rows(inbox.query(status, site, since, None).limit(limit))

    def inbox_iter(self, *, status: str | None = None, site: str | None = None,
                   since: str | None = None) -> Iterator[InboxRecord]:
        """All matching records in id order, fetched in pages of 200."""
        after = None
        while True:
            page = self._inbox_rows(inbox.query(status, site, since, after).limit(200))
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
            return [inbox.record_of(row) for row in conn.execute(query)]

    # -- outbox -------------------------------------------------------------------------------

    def outbox_fetch(self, limit: int = 500, after: int = 0) -> Sequence[OutboxRow]:
        """Unpublished rows in commit order, after ``after`` (``gateway.store.outbox.fetch``)."""
        with self._read() as conn:
            return outbox.fetch(conn, self.dialect == "postgresql", limit, after)

    def outbox_mark_published(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self.transaction() as tx:
            outbox.mark_published(tx.session, seqs)

    def outbox_prune(self, before: str, limit: int = 5000) -> int:
        """Delete up to ``limit`` published rows published before ``before`` (an instant),
        oldest first; returns how many went."""
        with self.transaction() as tx:
            return outbox.prune(tx.session, before, limit)

    def outbox_pending(self) -> int:
        with self._read() as conn:
            return outbox.pending(conn)


def _tombstone_stub(version: Version) -> Resource:
    return {"resourceType": version.resource_type, "id": version.id,
            "meta": {"versionId": str(version.version_id), "lastUpdated": version.last_updated}}

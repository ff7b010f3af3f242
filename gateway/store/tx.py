"""One write transaction: versioned resources, index rows, outbox, inbox, pseudonym links."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import ConflictError, VersionConflict
from gateway.security.access import Restriction
from gateway.store import inbox, outbox, projection, writegroup
from gateway.store import statements as sql
from gateway.store.base import Change, InboxRecord, PreparedVersions, Resource, SearchResult
from gateway.store.content import (
    content_hash,
    dumps,
    loads,
    normalise_instant,
    now_instant,
    stored_hash,
    with_meta,
)
from gateway.store.engine import translate, translated
from gateway.store.indexing import update_index
from gateway.store.restrict import is_visible
from gateway.store.search.query import run_search
from gateway.store.session import Session
from gateway.store.statements import Current


class SqlTransaction:
    """Writes on one session (connection, dialect, profile) inside one database
    transaction (see ``SqlStore``)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.conn = session.conn

    # -- resources -------------------------------------------------------------------------

    @translated
    def put(self, resource: Resource, *, source: str | None = None,
            if_match: int | None = None, headers: dict[str, str] | None = None) -> Change:
        return self.put_resource(resource, source=source, if_match=if_match, headers=headers)

    def put_resource(self, resource: Resource, *, source: str | None = None,
                     if_match: int | None = None, headers: dict[str, str] | None = None,
                     outbox: bool = True) -> Change:
        rtype, rid = resource["resourceType"], resource["id"]
        cur = self._current(rtype, rid)
        live = cur is not None and not cur.deleted
        if if_match is not None:
            actual = cur.version_id if cur is not None and live else None
            if actual != if_match:
                raise VersionConflict("version conflict", expected=if_match, actual=actual,
                                      resource=f"{rtype}/{rid}")
        digest = stored_hash(resource, source)
        if cur is not None and live and cur.content_hash == digest:
            assert cur.content is not None
            return Change(rtype, rid, cur.version_id, cur.last_updated, changed=False,
                          created=False, resource=loads(cur.content))
        version = (cur.version_id if cur is not None else 0) + 1
        stored = with_meta(resource, version, now_instant(), source)
        data = self._write(stored, digest, cur)
        if outbox:
            self._outbox(rtype, rid, version, headers, data)
        return Change(rtype, rid, version, stored["meta"]["lastUpdated"], changed=True,
                      created=not live, resource=stored)

    @translated
    def put_many(self, resources: Sequence[Resource], *, source: str | None = None,
                 headers: dict[str, str] | None = None,
                 headers_each: Sequence[dict[str, str]] | None = None) -> list[Change]:
        """``put`` for each resource in order, in a few statements
        (``gateway.store.writegroup``): the same versions, history, index and outbox rows,
        and Change values (``headers_each``: each resource's outbox headers)."""
        return writegroup.put_many(self.session, resources, source=source, headers=headers,
                                   headers_each=headers_each)

    @translated
    def apply_version(self, resource: Resource, *, outbox: bool = False,
                      headers: dict[str, str] | None = None) -> Change:
        rtype, rid = resource["resourceType"], resource["id"]
        meta = resource.get("meta") or {}
        if "versionId" not in meta or "lastUpdated" not in meta:
            raise ValueError("apply_version needs meta.versionId and meta.lastUpdated")
        version = int(meta["versionId"])
        last_updated = normalise_instant(meta["lastUpdated"])
        cur = self._current(rtype, rid)
        if cur is not None and cur.version_id >= version:
            return Change(rtype, rid, cur.version_id, cur.last_updated, changed=False,
                          created=False, deleted=cur.deleted,
                          resource=loads(cur.content) if cur.content else None)
        stored = {**resource, "meta": {**meta, "lastUpdated": last_updated}}
        data = self._write(stored, content_hash(stored), cur)
        if outbox:
            self._outbox(rtype, rid, version, headers, data)
        return Change(rtype, rid, version, last_updated, changed=True,
                      created=cur is None or cur.deleted, resource=stored)

    @translated
    def apply_versions(self, versions: PreparedVersions | Sequence[Resource]) -> int:
        """``apply_version`` for each of ``versions`` in order, in a few statements
        (``gateway.store.projection``); they may come prepared by
        ``SqlStore.prepare_versions``. Returns how many versions were written."""
        ready = projection.copy_ready(self.session)
        if isinstance(versions, projection.Prepared) and (ready or not versions.copy):
            return projection.write_prepared(self.session, versions)
        resources = versions if isinstance(versions, Sequence) else versions.resources
        return projection.write_prepared(self.session,
                                         projection.prepare_versions(resources, copy=ready))

    @translated
    def delete(self, resource_type: str, id: str, *, source: str | None = None,
               headers: dict[str, str] | None = None) -> Change:
        return self._tombstone(resource_type, id, None, None, outbox=True, headers=headers)

    @translated
    def apply_delete(self, resource_type: str, id: str, *, version_id: int | None = None,
                     last_updated: str | None = None, outbox: bool = False,
                     headers: dict[str, str] | None = None) -> Change:
        """Projector delete (a Kafka tombstone): no-op if missing, deleted, or newer."""
        return self._tombstone(resource_type, id, version_id, last_updated, outbox=outbox,
                               headers=headers)

    @translated
    def get(self, resource_type: str, id: str) -> Resource | None:
        cur = self._current(resource_type, id, lock=False)
        if cur is None or cur.deleted or cur.content is None:
            return None
        return loads(cur.content)

    @translated
    def visible(self, restriction: Restriction, resource_type: str, id: str) -> bool:
        """Whether a live resource is visible under ``restriction`` (seen from inside this
        transaction: after a write, whether the writer may still see what it wrote)."""
        return is_visible(self.conn, restriction, resource_type, id)

    def lock_key(self, key: str) -> None:
        """Serialise writers on ``key`` until this transaction ends (conditional create).
        PostgreSQL: a transaction-level advisory lock; SQLite: write transactions already
        run one at a time (``BEGIN IMMEDIATE``)."""
        if self.session.postgresql:
            self.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})

    def search(self, resource_type: str, params: list[tuple[str, str]],
               **options: Any) -> SearchResult:
        """Search on this transaction's connection (sees its own writes)."""
        try:
            return run_search(self.conn, self.session.dialect, resource_type, params,
                              **options)
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.conn.begin_nested():
            yield

    # -- inbox and links ----------------------------------------------------------------------

    @translated
    def inbox_add(self, record: InboxRecord) -> int:
        """Persist an inbound message; a second one with the same (sender application,
        sender facility, MSH-10) raises ConflictError and leaves the transaction usable."""
        return inbox.add(self.session, record)

    @translated
    def inbox_insert_many(self, records: Sequence[InboxRecord]) -> list[int]:
        """``inbox_add`` without savepoints for each record, in one statement: a group
        commit's inbox rows in one round trip instead of one per message."""
        return inbox.insert_many(self.session, records)

    @translated
    def links_get(self, keys: Sequence[str]) -> dict[str, str]:
        """The stored links of ``keys`` (absent keys: no link), in one statement per 500."""
        unique = sorted(set(keys))
        found: dict[str, str] = {}
        for start in range(0, len(unique), 500):
            found.update(self.conn.execute(sql.LINKS_GET,
                                           {"keys": unique[start:start + 500]}).all())
        return found

    @translated
    def inbox_find_many(self, keys: Sequence[tuple[str, str, str]]) -> dict[
            tuple[str, str, str], InboxRecord]:
        """The stored records of (sender application, sender facility, MSH-10) ``keys``,
        read on this transaction's connection."""
        return inbox.find_many(self.session, keys)

    @translated
    def inbox_update(self, record: InboxRecord) -> None:
        inbox.update_record(self.session, record)

    @translated
    def link_get(self, key: str) -> str | None:
        row = self.conn.execute(sql.LINK_GET, {"k": key}).first()
        return row[0] if row else None

    @translated
    def links_put(self, links: dict[str, str]) -> None:
        """``link_put`` for each (key, pseudonym), in two statements."""
        if not links:
            return
        keys = sorted(links)
        known = dict(self.conn.execute(sql.LINKS_GET, {"keys": keys}).all())
        if any(known[k] != links[k] for k in known):
            raise ConflictError("pseudonym link exists with another value")
        now = now_instant()
        missing = [{"key": k, "pseudonym": links[k], "created": now} for k in keys
                   if k not in known]
        if missing:
            self.conn.execute(sql.INSERT_LINK, missing)

    @translated
    def link_put(self, key: str, pseudonym: str) -> None:
        """Record a link; an existing link for ``key`` is kept (first writer wins) and a
        different pseudonym for it raises ConflictError."""
        existing = self.link_get(key)
        if existing is None:
            self.conn.execute(sql.INSERT_LINK, {"key": key, "pseudonym": pseudonym,
                                                "created": now_instant()})
        elif existing != pseudonym:
            raise ConflictError("pseudonym link exists with another value")

    # -- internals ----------------------------------------------------------------------------

    def _current(self, rtype: str, rid: str, *, lock: bool = True) -> Current | None:
        locking = lock and self.session.postgresql
        query = sql.CURRENT_FOR_UPDATE if locking else sql.CURRENT
        row = self.conn.execute(query, {"k_type": rtype, "k_id": rid}).first()
        return Current(*row) if row else None

    def _write(self, stored: Resource, digest: str, cur: Current | None) -> bytes:
        """The new current row, its history row (not on an edge) and index rows; returns
        the stored JSON."""
        rtype, rid = stored["resourceType"], stored["id"]
        meta = stored["meta"]
        version, last_updated = int(meta["versionId"]), meta["lastUpdated"]
        data = dumps(stored)
        values = {"version_id": version, "last_updated": last_updated, "deleted": False,
                  "content": data, "content_hash": digest}
        self._upsert(rtype, rid, values, cur)
        if not self.session.edge:
            self.conn.execute(sql.INSERT_VERSION, {
                "res_type": rtype, "res_id": rid, "version_id": version,
                "last_updated": last_updated, "deleted": False, "content": data})
        self._update_index(rtype, rid, stored, cur.content if cur is not None else None)
        return data

    def _upsert(self, rtype: str, rid: str, values: dict[str, Any], cur: Current | None) -> None:
        if cur is None:
            self.conn.execute(sql.INSERT_RESOURCE, {"res_type": rtype, "res_id": rid, **values})
        else:
            self.conn.execute(sql.UPDATE_RESOURCE, {"k_type": rtype, "k_id": rid, **values})

    def _tombstone(self, rtype: str, rid: str, version_id: int | None, last_updated: str | None,
                   *, outbox: bool, headers: dict[str, str] | None) -> Change:
        cur = self._current(rtype, rid)
        if cur is None or cur.deleted or (version_id is not None and cur.version_id >= version_id):
            return Change(rtype, rid, cur.version_id if cur else 0,
                          cur.last_updated if cur else "", changed=False, created=False,
                          deleted=True)
        version = version_id or cur.version_id + 1
        when = normalise_instant(last_updated) if last_updated else now_instant()
        self._upsert(rtype, rid, {"version_id": version, "last_updated": when, "deleted": True,
                                  "content": None, "content_hash": None}, cur)
        if not self.session.edge:
            self.conn.execute(sql.INSERT_VERSION, {
                "res_type": rtype, "res_id": rid, "version_id": version, "last_updated": when,
                "deleted": True, "content": None})
        self._update_index(rtype, rid, None, cur.content)
        if outbox:
            self._outbox(rtype, rid, version, headers, None)
        return Change(rtype, rid, version, when, changed=True, created=False, deleted=True)

    def _update_index(self, rtype: str, rid: str, resource: Resource | None,
                 previous: bytes | None) -> None:
        """Bring the index rows from those of ``previous`` (the stored content, None if
        there is none) to those of ``resource`` (None: deleted)."""
        update_index(self.session, {(rtype, rid): resource}, {(rtype, rid): previous})

    def _outbox(self, rtype: str, rid: str, version: int, headers: dict[str, str] | None,
                data: bytes | None) -> None:
        outbox.add(self.session, rtype, rid, version, headers, data)

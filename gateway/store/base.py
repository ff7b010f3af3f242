"""The store seam: what ingest, the FHIR API, the outbox relay and the hub projector use.

One implementation (``gateway.store.sql.SqlStore``) serves SQLite and PostgreSQL through
SQLAlchemy Core with the same schema and behaviour. The API is synchronous and
thread-safe; async callers run it in a thread (ingest has one writer thread that groups
several messages into one transaction: group commit).

Every write that changes a resource, in the same transaction:
  * a new row in the version history (``meta.versionId`` +1, ``meta.lastUpdated`` now),
  * the search index rows of the new current version,
  * one outbox row (for the bus relay).
A write whose content (ignoring ``meta.versionId``/``meta.lastUpdated``) equals the current
version changes nothing and writes no outbox row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from gateway.security.access import Restriction

if TYPE_CHECKING:
    from gateway.store.budget import Budget

Resource = dict[str, Any]


class Change:
    """The outcome of one resource write. ``resource`` is the stored resource with meta
    (None for deletes); a no-op write may carry the stored JSON instead (``stored``),
    parsed only if someone asks: ingest never does, and it is a JSON parse per unchanged
    resource of every message."""

    __slots__ = ("resource_type", "id", "version_id", "last_updated", "changed", "created",
                 "deleted", "_resource", "_stored")

    def __init__(self, resource_type: str, id: str, version_id: int, last_updated: str,
                 changed: bool, created: bool, deleted: bool = False,
                 resource: Resource | None = None, *, stored: bytes | None = None) -> None:
        self.resource_type = resource_type
        self.id = id
        self.version_id = version_id
        self.last_updated = last_updated  # ISO 8601 instant with zone
        self.changed = changed  # False: identical content, no new version
        self.created = created  # True: version 1
        self.deleted = deleted
        self._resource = resource
        self._stored = stored

    @property
    def resource(self) -> Resource | None:
        if self._resource is None and self._stored is not None:
            self._resource = orjson.loads(self._stored)
            self._stored = None
        return self._resource

    def _key(self) -> tuple[Any, ...]:
        return (self.resource_type, self.id, self.version_id, self.last_updated, self.changed,
                self.created, self.deleted, self.resource)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Change) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable (the lazy resource): no hash

    def __repr__(self) -> str:
        return (f"Change({self.resource_type}/{self.id}, version {self.version_id}, "
                f"changed={self.changed}, created={self.created}, deleted={self.deleted})")


@dataclass(slots=True)
class InboxRecord:
    """One inbound message as received (raw bytes kept at the edge only)."""

    sender_application: str
    sender_facility: str
    control_id: str
    raw: bytes
    received: str  # ISO 8601 instant
    transport: str = "mllp"  # mllp | http | file | fhir
    site: str | None = None
    message_type: str | None = None
    status: str = "received"  # received | processed | error | rejected
    ack: bytes | None = None  # the application ACK that was (or will be) sent
    error: str | None = None  # no patient data: position and reason only
    report: Resource | None = None  # OperationOutcome conversion report
    resource_refs: list[str] = field(default_factory=list)  # "Type/id/_history/n"
    id: int | None = None
    ack_ms: int | None = None  # from receipt to the ACK (the console's ACK latency)
    # (code, coding system) of each local code the report names as unmapped
    unmapped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InboxFilter:
    """Which inbox rows an admin list shows (None: any); ``since``/``until`` bound
    ``received`` (ISO 8601; ``until`` exclusive)."""

    status: str | None = None
    site: str | None = None
    message_type: str | None = None  # ``ORU`` or ``ORU^R01``: a prefix of MSH-9
    control_id: str | None = None
    since: str | None = None
    until: str | None = None


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One row of an admin list: the inbox record without raw bytes, ACK or report, and
    the resources it wrote counted by type instead of listed."""

    id: int
    sender_application: str
    sender_facility: str
    control_id: str
    received: str
    transport: str
    site: str | None
    message_type: str | None
    status: str
    error: str | None
    resources: dict[str, int]


@dataclass(frozen=True, slots=True)
class Version:
    """One entry of a resource's history (``resource`` is None for a delete)."""

    resource_type: str
    id: str
    version_id: int
    last_updated: str
    deleted: bool
    resource: Resource | None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    key: str  # "<ResourceType>/<id>"
    resource_type: str
    resource_id: str
    version_id: int
    payload: bytes | None  # resource JSON (None = tombstone)
    headers: dict[str, str]
    created: str


@dataclass(slots=True)
class SearchResult:
    resources: list[Resource]  # the matches of this page (search mode "match")
    included: list[Resource]  # _include / _revinclude results (search mode "include")
    total: int | None  # only with _total=accurate|estimate or _summary=count
    next_cursor: str | None  # opaque; pass back as the _cursor parameter
    prev_cursor: str | None
    applied: list[tuple[str, str]] = field(default_factory=list)  # for the self link
    issues: list[dict[str, Any]] = field(default_factory=list)  # lenient-mode warnings


class PreparedVersions(Protocol):
    """Versions made ready for ``Transaction.apply_versions`` by ``Store.prepare_versions``
    (opaque: only the store that prepared them reads them)."""

    resources: Sequence[Resource]


@dataclass(frozen=True, slots=True)
class RawResource:
    """A current version as stored: its JSON bytes (with ``meta``), version and instant."""

    content: bytes
    version_id: str
    last_updated: str


class RawReads(Protocol):
    """Reads by id of the stored JSON bytes (``Store.raw_reader``)."""

    def read(self, resource_type: str, id: str) -> RawResource | None:
        """The current version; None if there never was one; ``Gone`` if deleted."""

    async def read_async(self, resource_type: str, id: str) -> RawResource | None:
        """``read`` without holding the event loop for a database round trip."""

    def close(self) -> None:
        """Close the connections this reader opened."""


class Transaction(Protocol):
    """Writes inside one database transaction; committed when the context exits cleanly."""

    def put(self, resource: Resource, *, source: str | None = None,
            if_match: int | None = None, headers: dict[str, str] | None = None) -> Change:
        """Create or update ``resource`` (it carries resourceType and id)."""

    def put_many(self, resources: Sequence[Resource], *, source: str | None = None,
                 headers: dict[str, str] | None = None,
                 headers_each: Sequence[dict[str, str]] | None = None) -> list[Change]:
        """``put`` for each resource in order, with the same outcome, in a few statements
        (``headers_each``: each resource's outbox headers instead of ``headers``)."""

    def apply_version(self, resource: Resource) -> Change:
        """Projector write: store exactly ``resource.meta.versionId``/``lastUpdated`` if it
        is newer than what is stored; same or older version → no-op (changed=False)."""

    def apply_versions(self, versions: PreparedVersions | Sequence[Resource]) -> int:
        """``apply_version`` for each version in order, in a few statements; ``versions``
        as they came, or prepared by ``Store.prepare_versions``. Returns how many versions
        were written."""

    def apply_delete(self, resource_type: str, id: str, *, version_id: int | None = None,
                     last_updated: str | None = None) -> Change:
        """Projector tombstone: no-op if missing, already deleted, or held at
        ``version_id`` or newer."""

    def delete(self, resource_type: str, id: str, *, source: str | None = None,
               headers: dict[str, str] | None = None) -> Change:
        """Tombstone version + outbox tombstone; a missing or deleted resource: no-op."""

    def lock_key(self, key: str) -> None:
        """Serialise writers on ``key`` until the transaction ends (conditional create)."""

    def search(self, resource_type: str, params: list[tuple[str, str]],
               **options: Any) -> SearchResult:
        """Search on this transaction's connection (after ``lock_key``)."""

    def get(self, resource_type: str, id: str) -> Resource | None:
        ...

    def visible(self, restriction: Restriction, resource_type: str, id: str) -> bool:
        """Whether a live resource passes ``restriction`` (``gateway.security.access``)."""

    def inbox_add(self, record: InboxRecord) -> int:
        ...

    def inbox_update(self, record: InboxRecord) -> None:
        ...

    def inbox_insert_many(self, records: Sequence[InboxRecord]) -> list[int]:
        """``inbox_add`` for each record, in order, in one statement, without savepoints
        (a duplicate spoils the caller's transaction)."""

    def links_put(self, links: dict[str, str]) -> None:
        """``link_put`` for each (key, pseudonym)."""

    def links_get(self, keys: Sequence[str]) -> dict[str, str]:
        """The stored links of ``keys`` (a key without a link is absent)."""

    def inbox_find_many(self, keys: Sequence[tuple[str, str, str]]) -> dict[
            tuple[str, str, str], InboxRecord]:
        """Stored records by (sender application, sender facility, MSH-10)."""

    def link_get(self, key: str) -> str | None:
        """Pseudonym link table: identifier hash → pseudonym."""

    def link_put(self, key: str, pseudonym: str) -> None:
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an exception inside rolls back only what it wrote."""


class Store(Protocol):
    url: str

    def migrate(self) -> None:
        """Create or upgrade the schema (Alembic)."""

    def transaction(self) -> AbstractContextManager[Transaction]:
        ...

    def close(self) -> None:
        ...

    # reads
    # Every read takes ``restrict``: a caller's data restriction (``gateway.security.access``;
    # None: unrestricted, the SQL is then exactly that of a store without access control).
    # What it hides is absent: read/vread answer None, search and history leave it out.
    def read(self, resource_type: str, id: str, *,
             restrict: Restriction | None = None) -> Resource | None:
        """Current version; raises Gone for a deleted resource (None if restricted)."""

    def vread(self, resource_type: str, id: str, version_id: int, *,
              restrict: Restriction | None = None) -> Resource | None:
        ...

    def raw_reader(self) -> RawReads:
        """A reader of current versions as stored bytes, for the FHIR API's reads by id
        (unrestricted: the API checks a restricted caller's access before answering).
        The store closes it when it closes."""

    def history(self, resource_type: str | None, id: str | None, *, since: str | None = None,
                count: int = 50, restrict: Restriction | None = None) -> list[Resource]:
        """Newest first; a delete appears as ``{resourceType, id, meta}`` only."""

    def history_versions(self, resource_type: str | None, id: str | None, *,
                         since: str | None = None, before: str | None = None,
                         count: int = 50, restrict: Restriction | None = None
                         ) -> list[Version]:
        """Newest first, deletes flagged; ``before`` (exclusive) pages back in time."""

    def search(self, resource_type: str, params: list[tuple[str, str]], *,
               strict: bool = False, base_url: str | None = None,
               restrict: Restriction | None = None,
               budget: Budget | None = None) -> SearchResult:
        """Raw (name[:modifier], value) pairs; raises SearchError (strict) with ``issues``;
        ``Cancelled`` once ``budget`` is spent or cancelled."""

    def bulk_put(self, resources: Sequence[Resource], *, outbox: bool = False,
                 chunk: int = 2000) -> int:
        """Imports and benchmarks: many resources in one transaction; returns how many
        were new."""

    def prepare_versions(self, resources: Sequence[Resource]) -> PreparedVersions:
        """The part of ``Transaction.apply_versions`` that needs no database, done ahead
        (the projector prepares the next chunk while the store writes this one)."""

    # inbox
    def inbox_find(self, sender_application: str, sender_facility: str,
                   control_id: str) -> InboxRecord | None:
        ...

    def inbox_get(self, id: int) -> InboxRecord | None:
        ...

    def inbox_list(self, *, status: str | None = None, site: str | None = None,
                   since: str | None = None, limit: int = 100) -> list[InboxRecord]:
        ...

    def inbox_iter(self, *, status: str | None = None, site: str | None = None,
                   since: str | None = None) -> Iterator[InboxRecord]:
        ...

    def inbox_page(self, where: InboxFilter, *, before: tuple[str, int] | None = None,
                   limit: int = 50) -> list[InboxEntry]:
        """Newest first (received, then id); ``before``: the (received, id) of the last row
        of the previous page."""

    # outbox
    def outbox_fetch(self, limit: int = 500, after: int = 0) -> Sequence[OutboxRow]:
        """Unpublished rows in commit order; only those with ``seq`` above ``after`` (the
        relay's cursor over rows it published and has not marked yet)."""

    def outbox_mark_published(self, seqs: Sequence[int]) -> None:
        ...

    def outbox_pending(self) -> int:
        ...

    def outbox_prune(self, before: str, limit: int = 5000) -> int:
        """Delete published outbox rows published before ``before``; how many went."""

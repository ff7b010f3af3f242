"""What Bulk Data ``$export`` needs from the store: its job rows, and resource content
streamed in keyset pages (constant memory whatever the volume).

``stream_pages`` reads the current, live rows of one type in ``res_id`` order, ``page`` rows
at a time (``res_id > last`` each time: an index range on ``ix_resource_live``, never an
OFFSET), and hands out the stored JSON bytes as they are: an NDJSON line is the stored
content and a newline. ``Scope`` narrows the rows: modified since/until, members of a
patient compartment, Provenance of exported resources, and ``restriction`` (a callable
that adds the caller's data restriction to the query: the trust boundary's per-study
filter plugs in there: ``recorded_restriction``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import delete, false, func, insert, select, update

from gateway.security.access import Restriction
from gateway.store import schema as s
from gateway.store.content import normalise_instant
from gateway.store.restrict import visible

if TYPE_CHECKING:
    from gateway.store.sql import SqlStore

_r, _ref, _j = s.resource.c, s.idx_reference.c, s.export_job.c
ACTIVE = ("accepted", "in-progress")

# the reference parameters that put a resource of each type in a Patient's compartment
COMPARTMENT = {"Observation": ("subject", "patient", "performer"),
               "Specimen": ("subject", "patient"),
               "ResearchSubject": ("individual", "patient"),
               "Provenance": ("patient",), "Group": ("member",)}


@dataclass(frozen=True)
class Scope:
    """Which rows of a type an export takes."""

    until: str | None = None  # transactionTime: nothing modified after it
    since: str | None = None
    patients: Sequence[str] | None = None  # None: every patient (system level)
    compartment: bool = False  # only resources in some patient's compartment
    provenance_of: Sequence[str] = ()  # Provenance: only those targeting these types
    latest_provenance: bool = False  # … and only the newest one of each target
    restriction: Callable[[Any], Any] | None = None


def stream_pages(store: SqlStore, resource_type: str, scope: Scope, *,
                 page: int = 2000) -> Iterator[list[tuple[str, bytes]]]:
    """(id, stored JSON) of every matching live resource, ``page`` at a time."""
    base = _query(resource_type, scope)
    after = ""
    while True:
        with store.engine.connect() as conn:
            rows = conn.execute(base.where(_r.res_id > after).limit(page)).all()
        if not rows:
            return
        yield [(row.res_id, bytes(row.content)) for row in rows]
        if len(rows) < page:
            return
        after = rows[-1].res_id


def compartment_page(store: SqlStore, types: Sequence[str], scope: Scope, *,
                     after: tuple[int, str] | None, count: int,
                     restriction: Callable[[str], Callable[[Any], Any] | None] | None = None
                     ) -> tuple[list[tuple[str, bytes]], tuple[int, str] | None]:
    """One page of a patient compartment over several types, in type then id order:
    (type, stored JSON) rows and the position after the last one (None: nothing more).
    ``restriction``: the caller's narrowing of each type's query (``recorded_restriction``)."""
    index, last = after or (0, "")
    rows: list[tuple[str, bytes]] = []
    with store.engine.connect() as conn:
        while index < len(types) and len(rows) < count:
            query = _query(types[index], scope).where(_r.res_id > last)
            narrow = restriction(types[index]) if restriction is not None else None
            if narrow is not None:
                query = narrow(query)
            found = conn.execute(query.limit(count - len(rows))).all()
            rows.extend((types[index], bytes(row.content)) for row in found)
            if len(rows) < count:
                index, last = index + 1, ""
            else:
                last = found[-1].res_id
    return rows, (index, last) if index < len(types) else None


def _query(rtype: str, scope: Scope) -> Any:
    query = (select(_r.res_id, _r.content)
             .where(_r.res_type == rtype, _r.deleted.is_(False)).order_by(_r.res_id))
    if scope.until is not None:
        query = query.where(_r.last_updated <= normalise_instant(scope.until))
    if scope.since is not None:
        query = query.where(_r.last_updated >= normalise_instant(scope.since))
    if scope.provenance_of and rtype == "Provenance":
        query = query.where(_r.res_id.in_(_provenance_ids(scope)))
    elif scope.compartment or scope.patients is not None:
        query = query.where(_in_compartment(rtype, scope.patients))
    if scope.restriction is not None:
        query = scope.restriction(query)
    return query


def _in_compartment(rtype: str, patients: Sequence[str] | None) -> Any:
    if rtype == "Patient":
        return _r.res_id.in_(list(patients)) if patients is not None else _r.res_id.is_not(None)
    ids = select(_ref.res_id).where(_ref.res_type == rtype,
                                    _ref.param.in_(COMPARTMENT.get(rtype, ())),
                                    _ref.target_type == "Patient")
    if patients is not None:
        ids = ids.where(_ref.target_id.in_(list(patients)))
    return _r.res_id.in_(ids)


def _provenance_ids(scope: Scope) -> Any:
    """Provenance targeting a resource of the exported types (in the compartment, for a
    patient or group export)."""
    query = select(_ref.res_id).where(_ref.res_type == "Provenance", _ref.param == "target",
                                      _ref.target_type.in_(list(scope.provenance_of)))
    if scope.compartment or scope.patients is not None:
        targets = [select(_r.res_id).where(_r.res_type == t, _in_compartment(t, scope.patients))
                   for t in scope.provenance_of]
        query = query.where(_ref.target_id.in_(targets[0].union_all(*targets[1:])))
    if scope.latest_provenance:
        query = _newest_per_target(query)
    return query


def _newest_per_target(query: Any) -> Any:
    """Of the Provenance ``query`` selects, the newest (``meta.lastUpdated``, then id) of
    each target."""
    p = s.resource.alias("provenance")
    ranked = (query.add_columns(func.row_number().over(
        partition_by=(_ref.target_type, _ref.target_id),
        order_by=(p.c.last_updated.desc(), _ref.res_id.desc())).label("rank"))
        .join(p, (p.c.res_type == "Provenance") & (p.c.res_id == _ref.res_id)
              & p.c.deleted.is_(False))).subquery()
    return select(ranked.c.res_id).where(ranked.c.rank == 1)


# -- jobs ----------------------------------------------------------------------------------

JSON_COLUMNS = ("params", "principal", "manifest")


class ExportJobs:
    """The ``export_job`` rows: a job is a dict of its columns (JSON columns decoded)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def add(self, job: dict[str, Any]) -> None:
        with self.store.transaction() as tx:
            tx.conn.execute(insert(s.export_job), _encoded(job))

    def get(self, id: str) -> dict[str, Any] | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(s.export_job).where(_j.id == id)).first()
        return _decoded(row._mapping) if row is not None else None

    def update(self, id: str, *, only_if: Sequence[str] = (), **values: Any) -> bool:
        """Change a job; with ``only_if``, only while its status is one of those (a
        cancelled job is never marked completed). Whether a row changed."""
        query = update(s.export_job).where(_j.id == id).values(**_encoded(values))
        if only_if:
            query = query.where(_j.status.in_(list(only_if)))
        with self.store.transaction() as tx:
            return bool(tx.conn.execute(query).rowcount)

    def remove(self, id: str) -> None:
        with self.store.transaction() as tx:
            tx.conn.execute(delete(s.export_job).where(_j.id == id))

    def active(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(s.export_job)
                                    .where(_j.status.in_(ACTIVE))).scalar_one())

    def ids(self, *, statuses: Sequence[str] = (), expired_before: str | None = None
            ) -> list[str]:
        query = select(_j.id).order_by(_j.created)
        if statuses:
            query = query.where(_j.status.in_(list(statuses)))
        if expired_before is not None:
            query = query.where(_j.expires.is_not(None), _j.expires < expired_before)
        with self.store.engine.connect() as conn:
            return [row.id for row in conn.execute(query)]


def _encoded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: orjson.dumps(v).decode() if k in JSON_COLUMNS and v is not None else v
            for k, v in values.items()}


def _decoded(row: Any) -> dict[str, Any]:
    return {k: orjson.loads(v) if k in JSON_COLUMNS and v is not None else v
            for k, v in dict(row).items()}


def recorded_restriction(principal: dict[str, Any], resource_type: str
                         ) -> Callable[[Any], Any] | None:
    """The data restriction of the principal an export job recorded, for one type, as a
    narrowing of that type's query (``Scope.restriction``); None: unrestricted. The rule is
    the FHIR API's (``gateway.security.access``), applied in SQL the same way."""
    restriction = restriction_of_record(principal)
    if restriction is None:
        return None
    if not restriction.may_see_type(resource_type):
        return lambda query: query.where(false())
    condition = visible(restriction, resource_type, s.resource.c.res_id)
    return lambda query: query.where(condition)


def restriction_of_record(principal: dict[str, Any]) -> Restriction | None:
    """The ``Restriction`` of a recorded principal (None: unrestricted), for the paths that
    go through the store's search (``_typeFilter``)."""
    studies, sites = principal.get("studies"), principal.get("sites")
    if principal.get("anonymous") or (studies is None and sites is None):
        return None
    return Restriction(studies=None if studies is None else frozenset(studies),
                       sites=None if sites is None else frozenset(sites))

"""What SQL-on-FHIR views need from the store: the resources of one type streamed in keyset
pages (the Bulk export's ``stream_pages``: constant memory, the caller's restriction in the
SQL), and the stored ViewDefinitions.

ViewDefinitions are kept as resources of type ``ViewDefinition`` in the resource table:
versioned like every resource (``meta.versionId``, ``meta.lastUpdated``, history), but
local to the node that holds them: written without an outbox row, so that they are never
relayed on the bus (they are analysis definitions of this hub, not network data), and
indexed by no search parameter (the few there are are filtered by ``name``/``url`` here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select

from gateway.errors import Gone
from gateway.store import schema as s
from gateway.store.base import Change, Resource
from gateway.store.exports import Scope, recorded_restriction, stream_pages

if TYPE_CHECKING:
    from gateway.store.sql import SqlStore

VIEW_TYPE = "ViewDefinition"
_r = s.resource.c


def view_resources(store: SqlStore, resource_type: str, *, since: str | None = None,
                   patients: Sequence[str] | None = None,
                   principal: dict[str, Any] | None = None,
                   page: int = 1000) -> Iterator[list[Resource]]:
    """The live resources of ``resource_type`` a view runs over, a page at a time, in id
    order. ``since``: modified at or after; ``patients``: only those in these Patients'
    compartments (a type without a patient compartment gives nothing); ``principal``: the
    caller as ``recorded_restriction`` takes it (studies, sites, anonymous)."""
    narrow: Callable[[Any], Any] | None = None
    if principal is not None:
        narrow = recorded_restriction(principal, resource_type)
    scope = Scope(since=since, patients=patients, restriction=narrow)
    for rows in stream_pages(store, resource_type, scope, page=page):
        yield [orjson.loads(content) for _, content in rows]


def read_view(store: SqlStore, id: str) -> Resource | None:
    """A stored ViewDefinition (None: unknown or deleted)."""
    try:
        return store.read(VIEW_TYPE, id)
    except Gone:
        return None


def list_views(store: SqlStore, *, name: str | None = None, url: str | None = None
               ) -> list[Resource]:
    """The stored ViewDefinitions (id order), those with this ``name`` / ``url`` if given."""
    query = (select(_r.content).where(_r.res_type == VIEW_TYPE, _r.deleted.is_(False))
             .order_by(_r.res_id))
    with store.engine.connect() as conn:
        found = [orjson.loads(row.content) for row in conn.execute(query)]
    return [v for v in found if (name is None or v.get("name") == name)
            and (url is None or v.get("url") == url)]


def save_view(store: SqlStore, view: Resource, *, if_match: int | None = None) -> Change:
    """Create or update a ViewDefinition (checked by the caller), never relayed."""
    with store.transaction() as tx:
        return tx.put_resource(view, if_match=if_match, outbox=False)


def delete_view(store: SqlStore, id: str) -> bool:
    """Delete a ViewDefinition (a new deleted version, no outbox row); False if there was
    none."""
    if read_view(store, id) is None:
        return False
    with store.transaction() as tx:
        tx.apply_delete(VIEW_TYPE, id, outbox=False)
    return True

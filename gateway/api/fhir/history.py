"""History pages: newest first, ``_since`` and ``_count``, and a ``next`` cursor.

The store lists versions by ``lastUpdated`` (``history_versions(since=, before=)``, before
exclusive). A page never splits the versions that share one instant (a bulk load writes
thousands with the same ``lastUpdated``): when the page would end inside such a group the
group moves to the next page, or, when the group fills the whole page, the page grows to
hold it. So following ``next`` neither skips nor repeats a version.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from gateway.security.access import Restriction
from gateway.store import Resource, Store, format_instant

Version = tuple[Resource, bool]  # (resource or its stub, deleted?)
GROUP_LIMIT = 10_000


def history_page(store: Store, rtype: str | None, id: str | None, *, since: str | None,
                 before: str | None, count: int, restrict: Restriction | None = None
                 ) -> tuple[list[Version], str | None]:
    """One page of versions and the ``before`` cursor of the next page (None: last);
    ``restrict``: only the versions of resources the caller may see."""
    options = {"restrict": restrict} if restrict is not None else {}
    detailed = getattr(store, "history_versions", None)
    if detailed is None:  # a store without cursors: one page
        return [(r, False) for r in store.history(rtype, id, since=since, count=count,
                                                  **options)], None
    if options:
        detailed = partial(detailed, **options)
    rows = detailed(rtype, id, since=since, before=before, count=count + 1)
    if len(rows) <= count:
        return [_version(v) for v in rows], None
    edge = rows[count - 1].last_updated
    if rows[count].last_updated != edge:  # the page ends between two instants
        return [_version(v) for v in rows[:count]], edge
    head = [v for v in rows[:count] if v.last_updated != edge]
    if head:  # the last instant's group goes to the next page, whole
        return [_version(v) for v in head], _just_after(edge)
    group = detailed(rtype, id, since=edge, before=_just_after(edge), count=GROUP_LIMIT)
    return [_version(v) for v in group], edge


def _just_after(instant: str) -> str:
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return format_instant(moment + timedelta(milliseconds=1))


def _version(version: Any) -> Version:
    if version.resource is not None:
        return version.resource, version.deleted
    stub = {"resourceType": version.resource_type, "id": version.id,
            "meta": {"versionId": str(version.version_id),
                     "lastUpdated": version.last_updated}}
    return stub, version.deleted

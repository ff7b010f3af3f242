"""``_typeFilter``: an export's rows of one type chosen by search queries, run through the
store's own search (keyset-paged with its cursor, one page in memory at a time).

Several filters on one type are alternatives (a resource matching any is exported once: the
ids already written are remembered for that type only when there are several). Patient and
Group exports keep only resources in the compartment of their patients.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import orjson

from gateway.security.access import Restriction
from gateway.store.exports import Scope
from gateway.store.sql import SqlStore

_PATIENT = re.compile(rb'Patient/([A-Za-z0-9\-.]{1,64})(?=["/])')


def filtered_pages(store: SqlStore, rtype: str, queries: list[str], scope: Scope,
                   page: int, restrict: Restriction | None = None
                   ) -> Iterator[list[tuple[str, bytes]]]:
    """``restrict``: the caller's data restriction, applied by the store's search."""
    seen: set[str] | None = set() if len(queries) > 1 else None
    for query in queries:
        for found in _search_pages(store, rtype, query, scope, page, restrict):
            kept = [(id, content) for id, content in found
                    if _in_scope(rtype, id, content, scope)
                    and (seen is None or id not in seen)]
            if seen is not None:
                seen.update(id for id, _ in kept)
            if kept:
                yield kept


def _search_pages(store: SqlStore, rtype: str, query: str, scope: Scope,
                  page: int, restrict: Restriction | None
                  ) -> Iterator[list[tuple[str, bytes]]]:
    from urllib.parse import parse_qsl

    params = [*parse_qsl(query, keep_blank_values=True), ("_count", str(page)),
              ("_lastUpdated", f"le{scope.until}")]
    if scope.since:
        params.append(("_lastUpdated", f"ge{scope.since}"))
    cursor: str | None = None
    while True:
        result = store.search(rtype, [*params, *([("_cursor", cursor)] if cursor else [])],
                              strict=True, restrict=restrict)
        yield [(r["id"], orjson.dumps(r)) for r in result.resources]
        cursor = result.next_cursor
        if not cursor or not result.resources:
            return


def _in_scope(rtype: str, id: str, content: bytes, scope: Scope) -> bool:
    if not scope.compartment and scope.patients is None:
        return True
    if rtype == "Patient":
        return scope.patients is None or id in scope.patients
    referenced = {m.decode() for m in _PATIENT.findall(content)}
    if scope.patients is None:
        return bool(referenced)
    return not referenced.isdisjoint(scope.patients)

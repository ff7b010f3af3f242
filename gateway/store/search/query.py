"""Run a search: filters → one SELECT with keyset paging, then _include/_revinclude.

Paging is by keyset on (sort keys…, id), never OFFSET: a cursor names the last (or first)
row of a page, so rows written between two page requests neither shift nor duplicate
the rows that were already there. Without ``_sort`` results come in id order.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from sqlalchemy import Connection, select

from gateway.errors import SearchError
from gateway.security.access import Restriction
from gateway.store import schema as s
from gateway.store.base import Resource, SearchResult
from gateway.store.content import loads
from gateway.store.search import params as registry
from gateway.store.search.include import resolve_includes
from gateway.store.search.order import counted, fetch, segments
from gateway.store.search.plan import Plan, make_plan


def run_search(conn: Connection, dialect: str, resource_type: str,
               params: list[tuple[str, str]], *, strict: bool = False,
               base_url: str | None = None, restrict: Restriction | None = None
               ) -> SearchResult:
    """``restrict``: the caller's data restriction, applied in the same statements (so
    counts, pages and cursors are those of what the caller may see)."""
    plan = make_plan(resource_type, params, strict=strict, base_url=base_url,
                     restrict=restrict)
    total = _count(conn, plan) if plan.total != "none" or plan.summary == "count" else None
    if plan.summary == "count" or plan.count == 0:
        return SearchResult([], [], total, None, None, plan.applied, plan.issues)
    rows, next_cursor, prev_cursor = _page(conn, plan, strict)
    resources = _contents(conn, plan.resource_type, [row.res_id for row in rows])
    included = resolve_includes(conn, plan, resources)
    return SearchResult(resources, included, total, next_cursor, prev_cursor, plan.applied,
                        plan.issues)


def _contents(conn: Connection, rtype: str, ids: list[str]) -> list[Resource]:
    """The page's resources, in page order: the page is chosen on indexes alone, and
    only its own rows are read from the resource table."""
    if not ids:
        return []
    r = s.resource.c
    query = select(r.res_id, r.content).where(r.res_type == rtype, r.res_id.in_(ids))
    content = {row.res_id: row.content for row in conn.execute(query)}
    return [loads(content[rid]) for rid in ids if rid in content]


def _count(conn: Connection, plan: Plan) -> int:
    return int(conn.execute(counted(plan)).scalar_one())


def _page(conn: Connection, plan: Plan, strict: bool) -> tuple[list[Any], str | None,
                                                                  str | None]:
    cursor = _decode(plan.cursor, plan, strict) if plan.cursor else None
    backwards = cursor is not None and cursor["d"] == "p"
    parts = segments(conn, plan)
    rows: list[Any] = []
    for segment in reversed(parts) if backwards else parts:
        rows += fetch(conn, segment, cursor, backwards, plan.count + 1 - len(rows))
        if len(rows) > plan.count:
            break
    more = len(rows) > plan.count
    rows = rows[:plan.count]
    if backwards:
        rows.reverse()
    if not rows:
        return rows, None, None
    has_next = more if not backwards else True
    has_prev = (cursor is not None) if not backwards else more
    return (rows, _encode(plan, "n", rows[-1], len(plan.sort)) if has_next else None,
            _encode(plan, "p", rows[0], len(plan.sort)) if has_prev else None)


def _sort_spec(plan: Plan) -> str:
    return ",".join(("-" if desc else "") + name for name, desc in plan.sort)


def _encode(plan: Plan, direction: str, row: Any, nkeys: int) -> str:
    state = {"d": direction, "v": [row._mapping[f"k{i}"] for i in range(nkeys)],
             "id": row.res_id,
             "s": _sort_spec(plan)}
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def _decode(token: str, plan: Plan, strict: bool) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state: dict[str, Any] = orjson.loads(raw)
        if state["s"] != _sort_spec(plan) or len(state["v"]) != len(plan.sort):
            raise ValueError("cursor from another sort order")
        if state["d"] not in ("n", "p") or not isinstance(state["id"], str):
            raise ValueError("bad cursor")
        for (name, _desc), value in zip(plan.sort, state["v"], strict=True):
            if not isinstance(value, _cursor_type(plan.resource_type, name)):
                raise ValueError("cursor value of the wrong type")
        return state
    except (ValueError, KeyError, TypeError) as exc:
        issue: dict[str, object] = {"severity": "error" if strict else "warning",
                                    "code": "invalid",
                 "diagnostics": "_cursor: not a cursor of this search", "expression": ["_cursor"]}
        if strict:
            raise SearchError("invalid cursor", issues=[issue]) from exc
        plan.issues.append(issue)
        return None


def _cursor_type(rtype: str, name: str) -> type | tuple[type, ...]:
    definition = registry.lookup(rtype, name)
    kind = definition.type if definition is not None and not name.startswith("_") else "string"
    if kind == "date":
        return int
    return (int, float) if kind in ("quantity", "number") else str


__all__ = ["Resource", "run_search"]

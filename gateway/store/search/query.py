"""Run a search: filters → one SELECT with keyset paging, then _include/_revinclude.

Paging is by keyset on (sort keys…, id), never OFFSET: a cursor names the last (or first)
row of a page, so rows written between two page requests neither shift nor duplicate
the rows that were already there. Without ``_sort`` results come in id order.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, and_, exists, false, func, not_, or_, select

from gateway.errors import SearchError
from gateway.store import schema as s
from gateway.store.base import Resource, SearchResult
from gateway.store.content import loads
from gateway.store.search import params as registry
from gateway.store.search.include import resolve_includes
from gateway.store.search.plan import Plan, make_plan
from gateway.store.search.values import MAX_MS, MIN_MS, TOP

SORT_COLUMN = {"token": "code", "string": "value_norm", "quantity": "value", "number": "value",
               "reference": "target_id", "uri": "value"}
Key = tuple[Any, bool]  # (expression, descending)


def run_search(conn: Connection, dialect: str, resource_type: str,
               params: list[tuple[str, str]], *, strict: bool = False,
               base_url: str | None = None) -> SearchResult:
    plan = make_plan(resource_type, params, strict=strict, base_url=base_url)
    total = _count(conn, plan) if plan.total != "none" or plan.summary == "count" else None
    if plan.summary == "count" or plan.count == 0:
        return SearchResult([], [], total, None, None, plan.applied, plan.issues)
    rows, next_cursor, prev_cursor = _page(conn, plan, strict)
    resources = [loads(row.content) for row in rows]
    included = resolve_includes(conn, plan, resources)
    return SearchResult(resources, included, total, next_cursor, prev_cursor, plan.applied,
                        plan.issues)


def _filtered(plan: Plan, *columns: Any) -> Any:
    """The matching resources: the most selective positive filter (by rank) drives as
    ``id IN (…)``; the others are checked per candidate as correlated (NOT) EXISTS."""
    r = s.resource.c
    query = select(*columns).where(r.res_type == plan.resource_type, r.deleted == false())
    positive = sorted((f for f in plan.filters if not f.negated), key=lambda f: f.rank)
    driver = positive[0] if positive else None
    for flt in plan.filters:
        if flt.rank < 0:  # _id: a plain condition on the resource row
            condition = flt.ids.whereclause
            query = query.where(not_(condition) if flt.negated else condition)
        elif flt is driver:
            query = query.where(r.res_id.in_(flt.ids))
        else:
            column = flt.ids.selected_columns[0]
            found = exists(flt.ids.where(column == r.res_id))
            query = query.where(~found if flt.negated else found)
    return query


def _count(conn: Connection, plan: Plan) -> int:
    query = _filtered(plan, func.count())
    return int(conn.execute(query).scalar_one())


def _page(conn: Connection, plan: Plan, strict: bool) -> tuple[list[Any], str | None,
                                                                  str | None]:
    r = s.resource.c
    keys = [_sort_key(plan.resource_type, name, desc) for name, desc in plan.sort]
    cursor = _decode(plan.cursor, plan, strict) if plan.cursor else None
    backwards = cursor is not None and cursor["d"] == "p"
    labeled = [expr.label(f"k{i}") for i, (expr, _desc) in enumerate(keys)]
    query = _filtered(plan, r.res_id, r.content, *labeled)
    if cursor is not None:
        query = query.where(_beyond(keys, cursor["v"], cursor["id"], backwards))
    order = [(expr.desc() if desc != backwards else expr.asc()) for expr, desc in keys]
    order.append(r.res_id.desc() if backwards else r.res_id.asc())
    rows = list(conn.execute(query.order_by(*order).limit(plan.count + 1)).all())
    more = len(rows) > plan.count
    rows = rows[:plan.count]
    if backwards:
        rows.reverse()
    if not rows:
        return rows, None, None
    first, last = rows[0], rows[-1]
    has_next = more if not backwards else True
    has_prev = (cursor is not None) if not backwards else more
    return (rows, _encode(plan, "n", last, len(keys)) if has_next else None,
            _encode(plan, "p", first, len(keys)) if has_prev else None)


def _sort_key(rtype: str, name: str, desc: bool) -> Key:
    r = s.resource.c
    if name == "_id":
        return r.res_id, desc
    if name == "_lastUpdated":
        return r.last_updated, desc
    definition = registry.lookup(rtype, name)
    assert definition is not None
    table = s.INDEX_TABLES[definition.type]
    column = (table.c.high if desc else table.c.low) if definition.type == "date" else \
        table.c[SORT_COLUMN[definition.type]]
    aggregate = func.max(column) if desc else func.min(column)
    value = select(aggregate).where(table.c.res_type == r.res_type, table.c.res_id == r.res_id,
                                    table.c.param == name).scalar_subquery()
    return func.coalesce(value, _missing_last(definition.type, desc)), desc


def _missing_last(kind: str, desc: bool) -> Any:
    """A stand-in for 'no value' that sorts after every value in the requested direction."""
    if kind == "date":
        return MIN_MS - 1 if desc else MAX_MS + 1
    if kind in ("quantity", "number"):
        return -1e300 if desc else 1e300
    return "" if desc else TOP


def _beyond(keys: list[Key], values: list[Any], last_id: str,
            backwards: bool) -> ColumnElement[bool]:
    """Rows strictly after (or, backwards, before) the cursor row in the sort order."""
    r = s.resource.c
    terms, equal = [], []
    for (expr, desc), value in zip(keys, values, strict=True):
        terms.append(and_(*equal, expr < value if desc != backwards else expr > value))
        equal.append(expr == value)
    terms.append(and_(*equal, r.res_id < last_id if backwards else r.res_id > last_id))
    return or_(*terms)


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
        return state
    except (ValueError, KeyError, TypeError) as exc:
        issue = {"severity": "error" if strict else "warning", "code": "invalid",
                 "diagnostics": "_cursor: not a cursor of this search", "expression": ["_cursor"]}
        if strict:
            raise SearchError("invalid cursor", issues=[issue]) from exc
        plan.issues.append(issue)
        return None


__all__ = ["Resource", "run_search"]

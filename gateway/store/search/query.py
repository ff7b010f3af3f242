"""Run a search: filters → one SELECT with keyset paging, then _include/_revinclude.

Paging is by keyset on (sort keys…, id), never OFFSET: a cursor names the last (or first)
row of a page, so rows written between two page requests neither shift nor duplicate
the rows that were already there. Without ``_sort`` results come in id order.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
)

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
DRIVER_MAX = 20_000  # a filter matching more rows than this does not drive an ordered walk
DRIVER_MAX_SORTED = 2_000  # … when its rows would also need a sort on a date
INDEX_ORDERED = {"_id", "_lastUpdated"}


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


def _filtered(plan: Plan, *columns: Any, source: Any = None, drive_below: int = 99) -> Any:
    """The matching resources: the most selective positive filter (by rank, if its rank
    is below ``drive_below``) drives as ``id IN (…)``; the others are checked per
    candidate as correlated (NOT) EXISTS."""
    r = s.resource.c
    query = select(*columns)
    if source is not None:
        query = query.select_from(source)
    query = query.where(r.res_type == plan.resource_type, r.deleted == false())
    positive = sorted((f for f in plan.filters if not f.negated), key=lambda f: f.rank)
    driver = positive[0] if positive and positive[0].rank < drive_below else None
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
    cursor = _decode(plan.cursor, plan, strict) if plan.cursor else None
    backwards = cursor is not None and cursor["d"] == "p"
    segments = _segments(plan, _drive_below(conn, plan))
    rows: list[Any] = []
    for query, keys in reversed(segments) if backwards else segments:
        rows += _fetch(conn, query, keys, cursor, backwards, plan.count + 1 - len(rows))
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


def _drive_below(conn: Connection, plan: Plan) -> int:
    """Whether the best filter should drive the query (99) or not (0).

    When the order can come from an index (id, _lastUpdated, a single-valued date), a
    filter matching many rows is better checked per row while the database walks that
    index and stops at the page size; a filter matching few rows (a reference, or up to a
    cap, probed with a capped count) drives, and its rows are sorted."""
    positive = sorted((f for f in plan.filters if not f.negated and f.rank >= 0),
                      key=lambda f: f.rank)
    if not positive or positive[0].rank == 0 or not _index_ordered(plan):
        return 99
    cap = DRIVER_MAX_SORTED if plan.sort and plan.sort[0][0] not in INDEX_ORDERED else DRIVER_MAX
    capped = positive[0].ids.limit(cap + 1).subquery()
    matches = conn.execute(select(func.count()).select_from(capped)).scalar_one()
    return 99 if matches <= cap else 0


def _index_ordered(plan: Plan) -> bool:
    if not plan.sort:
        return True
    if len(plan.sort) != 1:
        return False
    definition = registry.lookup(plan.resource_type, plan.sort[0][0])
    return plan.sort[0][0] in INDEX_ORDERED or (definition is not None and definition.single)


def _segments(plan: Plan, drive_below: int) -> list[tuple[Any, list[Key]]]:
    """The result in sort order, as one query or, for a sort on one single-valued date,
    two: resources with the date (joined to the date index, so the database can walk it
    in order and stop at the page size) then those without it."""
    r = s.resource.c
    definition = registry.lookup(plan.resource_type, plan.sort[0][0]) if plan.sort else None
    if len(plan.sort) != 1 or definition is None or not definition.single:
        keys = [_sort_key(plan.resource_type, name, desc) for name, desc in plan.sort]
        labeled = [expr.label(f"k{i}") for i, (expr, _desc) in enumerate(keys)]
        return [(_filtered(plan, r.res_id, r.content, *labeled, drive_below=drive_below),
                 keys)]
    desc = plan.sort[0][1]
    sort_index = s.idx_date.alias("sort_date")  # apart from idx_date in the filters
    d = sort_index.c
    column = d.high if desc else d.low
    joined = s.resource.join(sort_index, and_(d.res_type == r.res_type, d.res_id == r.res_id,
                                              d.param == definition.name))
    present = _filtered(plan, r.res_id, r.content, column.label("k0"), source=joined,
                        drive_below=drive_below)
    sentinel = literal(_missing_last("date", desc), BigInteger)
    without = select(d.res_id).where(d.res_type == r.res_type, d.res_id == r.res_id,
                                     d.param == definition.name)
    missing = _filtered(plan, r.res_id, r.content, sentinel.label("k0"),
                        drive_below=drive_below).where(~exists(without))
    return [(present, [(column, desc)]), (missing, [(sentinel, desc)])]


def _fetch(conn: Connection, query: Any, keys: list[Key], cursor: dict[str, Any] | None,
           backwards: bool, limit: int) -> list[Any]:
    r = s.resource.c
    id_desc = keys[-1][1] if keys else False  # ties follow the last key's direction
    if cursor is not None:
        query = query.where(_beyond(keys, cursor["v"], cursor["id"], backwards))
    order = [(expr.desc() if desc != backwards else expr.asc()) for expr, desc in keys]
    order.append(r.res_id.desc() if id_desc != backwards else r.res_id.asc())
    return list(conn.execute(query.order_by(*order).limit(limit)).all())


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
    id_desc = keys[-1][1] if keys else False
    terms.append(and_(*equal, r.res_id < last_id if id_desc != backwards else r.res_id > last_id))
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

"""Which rows a search walks, in which order, and where a page starts.

A plan's result is one or two *segments*: ordered queries of ids (plus sort values) read
one after the other. How each is shaped decides the speed:

* **driver**: a selective filter (a reference, a chain, ``_has``, or a filter a capped
  count shows to match few rows) is read from its own index; in id order its rows stream
  from that index and the page stops at ``_count``. The other filters are correlated
  ``EXISTS`` probes on covering indexes.
* **walk**: without a selective filter, when the order comes from an index (id,
  ``_lastUpdated``, one single-valued date), the database walks that index and checks
  the filters per row until the page is full.
* **sorted**: other sorts compute each candidate's sort value (``MIN`` ascending, ``MAX``
  descending; missing values last) and sort the candidates.

Pages are chosen on indexes alone (ids and sort values); the content of only the page's
rows is read afterwards.
"""

from __future__ import annotations

from typing import Any, NamedTuple

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

from gateway.store import schema as s
from gateway.store.restrict import candidates, visible, visible_row
from gateway.store.search import params as registry
from gateway.store.search.criteria import Filter
from gateway.store.search.plan import Plan
from gateway.store.search.values import MAX_MS, MIN_MS, TOP

SORT_COLUMN = {"token": "code", "string": "value_norm", "quantity": "value", "number": "value",
               "reference": "target_id", "uri": "value"}
DRIVER_MAX = 5_000  # a filter matching more rows than this does not drive an ordered walk
DRIVER_MAX_SORTED = 2_000  # … when its rows would also need a sort on a date
INDEX_ORDERED = {"_id", "_lastUpdated"}
NUMERIC = {"date", "quantity", "number"}
Key = tuple[Any, bool]  # (expression, descending)


class Segment(NamedTuple):
    query: Any  # selects res_id and the sort values k0, k1…
    keys: list[Key]
    id_column: Any


def segments(conn: Connection, plan: Plan) -> list[Segment]:
    driver = _driver(conn, plan)
    sort = plan.sort
    if driver is not None and (not sort or (len(sort) == 1 and sort[0][0] == "_id")) and \
            all(f.rank >= 0 for f in plan.filters):
        return [_driver_segment(plan, driver, sort[0][1] if sort else False)]
    definition = registry.lookup(plan.resource_type, sort[0][0]) if sort else None
    if len(sort) == 1 and definition is not None and definition.single:
        return _date_segments(plan, driver, definition.name, sort[0][1])
    r = s.resource.c
    keys = [_sort_key(plan.resource_type, name, desc) for name, desc in sort]
    labeled = [expr.label(f"k{i}") for i, (expr, _desc) in enumerate(keys)]
    return [Segment(filtered(plan, r.res_id, *labeled, driver=driver), keys, r.res_id)]


def filtered(plan: Plan, *columns: Any, source: Any = None,
             driver: Filter | None = None) -> Any:
    """Live resources of the plan's type passing every filter; ``driver`` as
    ``id IN (…)``, the others as correlated (NOT) EXISTS."""
    r = s.resource.c
    query = select(*columns)
    if source is not None:
        query = query.select_from(source)
    query = query.where(r.res_type == plan.resource_type, r.deleted == false())
    if plan.restrict is not None:
        query = query.where(visible(plan.restrict, plan.resource_type, r.res_id))
    for flt in plan.filters:
        if flt.rank < 0:  # _id: a plain condition on the resource row
            condition = flt.ids.whereclause
            assert condition is not None
            query = query.where(not_(condition) if flt.negated else condition)
        elif flt is driver:
            query = query.where(r.res_id.in_(flt.ids))
        else:
            query = query.where(_probe(flt, r.res_id))
    return query


def counted(plan: Plan) -> Any:
    """``SELECT count(*)`` of the matches, on the most selective filter's index."""
    positive = sorted((f for f in plan.filters if not f.negated and f.rank >= 0),
                      key=lambda f: f.rank)
    if not positive or any(f.rank < 0 for f in plan.filters):
        return filtered(plan, func.count())
    ids = _driver_segment(plan, positive[0], False).query.subquery()
    return select(func.count()).select_from(ids)


def _probe(flt: Filter, id_column: Any) -> ColumnElement[bool]:
    column = flt.ids.selected_columns[0]
    found = exists(flt.ids.where(column == id_column))
    return ~found if flt.negated else found


def _driver(conn: Connection, plan: Plan) -> Filter | None:
    """The filter that should drive, if any: a reference-like one always; another one
    only when the order cannot come from an index, or when it matches few rows."""
    positive = sorted((f for f in plan.filters if not f.negated and f.rank >= 0),
                      key=lambda f: f.rank)
    if not positive:
        return _restriction_driver(conn, plan)
    best = positive[0]
    if best.rank == 0 or not _index_ordered(plan) or (best.rank == 1 and not plan.sort):
        return best  # selective, or nothing better, or a token streaming in id order
    cap = DRIVER_MAX_SORTED if plan.sort and plan.sort[0][0] not in INDEX_ORDERED else DRIVER_MAX
    capped = best.ids.limit(cap + 1).subquery()
    matches = conn.execute(select(func.count()).select_from(capped)).scalar_one()
    return best if matches <= cap else None


def _restriction_driver(conn: Connection, plan: Plan) -> Filter | None:
    """With no filter to drive, a restricted search may walk the restriction's candidates
    (``restrict.candidates``) instead of the whole type, when they are few. Never one of
    the plan's filters: it is a superset of what ``visible`` keeps, only a faster walk."""
    ids = candidates(plan.restrict, plan.resource_type) if plan.restrict else None
    if ids is None:
        return None
    capped = ids.limit(DRIVER_MAX + 1).subquery()
    if conn.execute(select(func.count()).select_from(capped)).scalar_one() > DRIVER_MAX:
        return None
    return Filter(False, ids, 0)


def _index_ordered(plan: Plan) -> bool:
    if not plan.sort:
        return True
    if len(plan.sort) != 1:
        return False
    definition = registry.lookup(plan.resource_type, plan.sort[0][0])
    return plan.sort[0][0] in INDEX_ORDERED or (definition is not None and definition.single)


def _driver_segment(plan: Plan, driver: Filter, descending: bool) -> Segment:
    """Ids straight from the driver's index (in id order, so the page can stop early)."""
    page = driver.ids.subquery("driver")
    id_column = next(iter(page.c))
    sorted_by_id = bool(plan.sort)
    labels = [id_column.label("res_id")] + ([id_column.label("k0")] if sorted_by_id else [])
    query = select(*labels).distinct()
    if id_column.name != "res_id":  # ids of other rows' targets (_has): may be dangling
        r = s.resource.c
        query = query.where(exists(select(r.res_id).where(
            r.res_type == plan.resource_type, r.res_id == id_column, r.deleted == false())))
    for flt in plan.filters:
        if flt is not driver:
            query = query.where(_probe(flt, id_column))
    if plan.restrict is not None:
        query = query.where(visible_row(plan.restrict, plan.resource_type, id_column))
    return Segment(query, [(id_column, descending)] if sorted_by_id else [], id_column)


def _date_segments(plan: Plan, driver: Filter | None, name: str, desc: bool) -> list[Segment]:
    """Resources with the date (joined to the date index, walked in order) then those
    without it (sorted last)."""
    r = s.resource.c
    sort_index = s.idx_date.alias("sort_date")  # apart from idx_date in the filters
    d = sort_index.c
    column = d.high if desc else d.low
    joined = s.resource.join(sort_index, and_(d.res_type == r.res_type, d.res_id == r.res_id,
                                              d.param == name))
    present = filtered(plan, r.res_id, column.label("k0"), source=joined, driver=driver)
    sentinel = literal(missing_last("date", desc), BigInteger)
    without = select(d.res_id).where(d.res_type == r.res_type, d.res_id == r.res_id,
                                     d.param == name)
    missing = filtered(plan, r.res_id, sentinel.label("k0"), driver=driver).where(
        ~exists(without))
    return [Segment(present, [(column, desc)], r.res_id),
            Segment(missing, [(sentinel, desc)], r.res_id)]


def fetch(conn: Connection, segment: Segment, cursor: dict[str, Any] | None,
          backwards: bool, limit: int) -> list[Any]:
    """Up to ``limit`` rows of a segment after (or, backwards, before) the cursor."""
    query, keys, id_column = segment
    id_desc = keys[-1][1] if keys else False  # ties follow the last key's direction
    if cursor is not None:
        query = query.where(_beyond(keys, id_column, cursor, backwards))
    order = [(expr.desc() if desc != backwards else expr.asc()) for expr, desc in keys]
    order.append(id_column.desc() if id_desc != backwards else id_column.asc())
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
    # ``+ 0`` / ``|| ''``: not a bare column, so the database cannot answer MIN/MAX by
    # walking the value index (``ix_date_high``…) of every resource of the type for each
    # row (quadratic without planner statistics: minutes at 50k); it reads the resource's
    # own rows from the ``*_res`` index instead
    operand = column + 0 if definition.type in NUMERIC else column.concat("")
    aggregate = func.max(operand) if desc else func.min(operand)
    value = select(aggregate).where(table.c.res_type == r.res_type, table.c.res_id == r.res_id,
                                    table.c.param == name).scalar_subquery()
    return func.coalesce(value, missing_last(definition.type, desc)), desc


def missing_last(kind: str, desc: bool) -> Any:
    """A stand-in for 'no value' that sorts after every value in the requested direction."""
    if kind == "date":
        return MIN_MS - 1 if desc else MAX_MS + 1
    if kind in ("quantity", "number"):
        return -1e300 if desc else 1e300
    return "" if desc else TOP


def _beyond(keys: list[Key], id_column: Any, cursor: dict[str, Any],
            backwards: bool) -> ColumnElement[bool]:
    """Rows strictly after (or, backwards, before) the cursor row in the sort order."""
    terms: list[Any] = []
    equal: list[Any] = []
    for (expr, desc), value in zip(keys, cursor["v"], strict=True):
        terms.append(and_(*equal, expr < value if desc != backwards else expr > value))
        equal.append(expr == value)
    id_desc = keys[-1][1] if keys else False
    last = cursor["id"]
    terms.append(and_(*equal, id_column < last if id_desc != backwards else id_column > last))
    return or_(*terms)

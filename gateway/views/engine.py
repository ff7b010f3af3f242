"""Running a compiled view over one resource: the SQL-on-FHIR v2 functional model.

For a resource of the view's type that passes every ``where`` (each must give true; empty is
false; anything but one boolean is an error), the rows are those
of the view's selects, cross-joined. One select, on a node:

* its foci: the node itself, or the results of ``forEach``/``forEachOrNull`` on it, or all
  the nodes reached by applying the ``repeat`` paths again and again (depth first, the
  node itself excluded);
* per focus, the product of: one row of its columns, the rows of each nested select, and
  the rows of all its ``unionAll`` branches one after the other;
* no focus: no row, except ``forEachOrNull``, which gives one row of nulls (its own
  columns evaluated on an empty focus, so that ``%rowIndex`` is 0 there).

``%rowIndex`` is the 0-based position of the focus in its ``forEach``/``repeat``
collection (0 outside one); each level and each ``unionAll`` branch counts its own.

A column is the single value of its path (none: null); more than one value is an error
unless the column is ``collection: true`` (then: the list of values). Rows are tuples in
the order of ``View.names``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import product
from typing import Any

from .definition import Select, View

Row = tuple[Any, ...]


class RowError(ValueError):
    """A resource on which the view cannot make a row (the message names no data)."""


def rows(view: View, resource: dict[str, Any]) -> list[Row]:
    """The rows ``view`` makes of ``resource`` (none when it is of another type)."""
    if resource.get("resourceType") != view.resource:
        return []
    variables = {**view.constants, "resource": resource, "rootResource": resource,
                 "rowIndex": 0}
    for i, where in enumerate(view.where):
        if not _true(where.values(resource, variables), i):
            return []
    return _select(view.root, resource, variables)


def run(view: View, resources: Iterable[dict[str, Any]]) -> Iterator[Row]:
    for resource in resources:
        yield from rows(view, resource)


def _true(found: list[Any], index: int) -> bool:
    """Empty is false; one boolean is itself; anything else is an error (the
    specification: a where path evaluates to a boolean)."""
    if not found:
        return False
    value = found[0] if len(found) == 1 else None
    if not isinstance(value, bool):
        raise RowError(f"where[{index}].path must give a boolean")
    return value


def _select(select: Select, node: Any, variables: dict[str, Any]) -> list[Row]:
    if select.plain:  # columns only, on the node itself: one row
        return [_columns(select, node, variables)]
    if len(select.selects) == 1 and select.selects[0].plain and not select.columns \
            and select.for_each is None and not select.repeat and not select.union:
        return [_columns(select.selects[0], node, variables)]  # the view's top level
    if select.for_each is not None:
        foci = select.for_each(node, variables)
    elif select.repeat:
        foci = list(_repeat(select, node, variables))
    else:
        foci = [node]
    if not foci:
        return [_null_row(select, variables)] if select.or_null else []
    out: list[Row] = []
    iterating = select.for_each is not None or bool(select.repeat)
    for index, focus in enumerate(foci):
        here = {**variables, "rowIndex": index} if iterating else variables
        parts: list[list[Row]] = [[_columns(select, focus, here)]]
        parts += [_select(nested, focus, here) for nested in select.selects]
        if select.union:
            parts.append([row for branch in select.union
                          for row in _select(branch, focus, here)])
        out += [sum(combination, ()) for combination in product(*parts)]
    return out


def _null_row(select: Select, variables: dict[str, Any]) -> Row:
    """``forEachOrNull`` over nothing: its columns see an empty focus (``%rowIndex`` 0),
    everything nested in it is null."""
    row = _columns(select, [], {**variables, "rowIndex": 0})
    return row + (None,) * (len(select.names) - len(row))


def _repeat(select: Select, node: Any, variables: dict[str, Any]) -> Iterator[Any]:
    for path in select.repeat:
        for child in path(node, variables):
            yield child
            yield from _repeat(select, child, variables)


def _columns(select: Select, focus: Any, variables: dict[str, Any]) -> Row:
    values: list[Any] = []
    for column in select.columns:
        found = column.run.values(focus, variables)
        if column.collection:
            values.append(found)
        elif len(found) > 1:
            raise RowError(f"column {column.name!r} has more than one value: give it "
                           "collection: true, or narrow its path (e.g. first())")
        else:
            values.append(found[0] if found else None)
    return tuple(values)


def row_batches(view: View, pages: Iterable[list[dict[str, Any]]], *,
                limit: int | None = None) -> Iterator[list[Row]]:
    """The rows of every resource of ``pages``, one batch per page, at most ``limit`` in
    all (None: no limit); it stops reading pages once the limit is reached."""
    left = limit
    for page in pages:
        batch = [row for resource in page for row in rows(view, resource)]
        if left is not None:
            batch = batch[:left]
            left -= len(batch)
        yield batch
        if left is not None and left <= 0:
            return

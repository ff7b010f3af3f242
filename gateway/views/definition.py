"""A ViewDefinition checked and compiled: every path parsed once, every rule of the
SQL-on-FHIR v2 specification that can be checked before a row is made checked here.

``compile_view`` raises ``ViewError`` naming where the problem is, as a FHIRPath-like
location in the ViewDefinition (``select[0].column[1].path``): the API puts the parameter
in front (``viewResource.select[0]…``) and answers 400 before anything runs.

Checked: ``resource`` is a known resource type; ``select`` is a list of selections; each
column has a ``name`` (a letter, then letters, digits, ``_``: a name every database and
spreadsheet takes) and a ``path``; column names are unique in the view; ``forEach`` and
``forEachOrNull`` are not both given; the branches of a ``unionAll`` have the same columns
in the same order; each ``constant`` has a name and exactly one ``value[x]``; every path
parses, calls only known functions and only defined ``%constants``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .fhirpath import Path, PathError, compile_path

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ViewError(ValueError):
    """A ViewDefinition that cannot run: ``where`` is the location in it."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.reason = message


@dataclass(frozen=True)
class Column:
    name: str
    path: str
    run: Path
    collection: bool = False
    type: str | None = None


@dataclass
class Select:
    columns: list[Column] = field(default_factory=list)
    selects: list[Select] = field(default_factory=list)
    union: list[Select] = field(default_factory=list)
    for_each: Path | None = None
    or_null: bool = False
    repeat: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every column it yields, in order

    @property
    def plain(self) -> bool:
        """Columns only, on the node itself (one row per node)."""
        return self.for_each is None and not self.repeat and not self.selects \
            and not self.union


@dataclass
class View:
    resource: str
    root: Select
    where: list[Path]
    constants: dict[str, Any]
    name: str | None = None

    @property
    def names(self) -> list[str]:
        return self.root.names

    @property
    def columns(self) -> list[Column]:
        return list(_columns(self.root))


def _columns(select: Select) -> Any:
    yield from select.columns
    for nested in select.selects:
        yield from _columns(nested)
    if select.union:
        yield from _columns(select.union[0])


def compile_view(view: Any, known_types: Collection[str] | Callable[[str], bool], *,
                 fast: bool = True) -> View:
    """The compiled view; ``known_types``: the resource types a view may be over;
    ``fast``: False runs every path with the library only (to compare, bench/views.py)."""
    if not isinstance(view, dict):
        raise ViewError("", "a ViewDefinition is a JSON object")
    if view.get("resourceType", "ViewDefinition") != "ViewDefinition":
        raise ViewError("resourceType", "must be ViewDefinition")
    resource = view.get("resource")
    if not isinstance(resource, str) or not (
            known_types(resource) if callable(known_types) else resource in known_types):
        raise ViewError("resource", f"{resource!r} is not a resource type this server "
                        "holds" if isinstance(resource, str) else "a view needs a resource "
                        "type (a string)")
    constants = _constants(view.get("constant", []))
    selects = _list(view, "select", "")
    if not selects:
        raise ViewError("select", "a view needs at least one select")
    root = Select(selects=[_select(s, f"select[{i}]", constants)
                           for i, s in enumerate(selects)])
    root.names = [n for s in root.selects for n in s.names]
    _unique(root.names)
    where = [_path(w, f"where[{i}]", constants)
             for i, w in enumerate(_list(view, "where", ""))]
    name = view.get("name") if isinstance(view.get("name"), str) else None
    compiled = View(resource, root, where, constants, name)
    if not fast:
        for path in _paths(compiled):
            path.fast = None
    return compiled


def _paths(view: View) -> Any:
    yield from view.where

    def walk(select: Select) -> Any:
        yield from (column.run for column in select.columns)
        yield from ([select.for_each] if select.for_each is not None else [])
        yield from select.repeat
        for nested in (*select.selects, *select.union):
            yield from walk(nested)
    yield from walk(view.root)


def _list(node: dict[str, Any], key: str, at: str) -> list[Any]:
    value = node.get(key, [])
    where = f"{at}.{key}" if at else key
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ViewError(where, "must be a list of objects")
    return value


def _path(node: dict[str, Any], at: str, constants: dict[str, Any]) -> Path:
    text = node.get("path")
    if not isinstance(text, str):
        raise ViewError(f"{at}.path", "a path is required")
    return _compiled(text, f"{at}.path", constants)


def _compiled(text: Any, at: str, constants: dict[str, Any]) -> Path:
    if not isinstance(text, str):
        raise ViewError(at, "must be a FHIRPath expression (a string)")
    try:
        return compile_path(text, constants)
    except PathError as exc:
        raise ViewError(at, f"invalid FHIRPath: {exc}") from exc


def _select(node: dict[str, Any], at: str, constants: dict[str, Any]) -> Select:
    if "forEach" in node and "forEachOrNull" in node:
        raise ViewError(f"{at}.forEachOrNull", "forEach and forEachOrNull exclude each other")
    select = Select()
    for key in ("forEach", "forEachOrNull"):
        if key in node:
            select.for_each = _compiled(node[key], f"{at}.{key}", constants)
            select.or_null = key == "forEachOrNull"
    if "repeat" in node:
        paths = node["repeat"]
        if not isinstance(paths, list) or not paths:
            raise ViewError(f"{at}.repeat", "must be a non-empty list of paths")
        select.repeat = [_compiled(p, f"{at}.repeat[{i}]", constants)
                         for i, p in enumerate(paths)]
    select.columns = [_column(c, f"{at}.column[{i}]", constants)
                      for i, c in enumerate(_list(node, "column", at))]
    select.selects = [_select(s, f"{at}.select[{i}]", constants)
                      for i, s in enumerate(_list(node, "select", at))]
    select.union = [_select(s, f"{at}.unionAll[{i}]", constants)
                    for i, s in enumerate(_list(node, "unionAll", at))]
    for i, branch in enumerate(select.union[1:], 1):
        if branch.names != select.union[0].names:
            raise ViewError(f"{at}.unionAll[{i}]", "every branch of a unionAll must have "
                            "the same columns, in the same order, as the first")
    select.names = [c.name for c in select.columns]
    select.names += [n for s in select.selects for n in s.names]
    select.names += select.union[0].names if select.union else []
    if not select.names and not select.union:
        raise ViewError(at, "a select needs a column, a select or a unionAll")
    return select


def _column(node: dict[str, Any], at: str, constants: dict[str, Any]) -> Column:
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise ViewError(f"{at}.name", "a column needs a name")
    if not NAME.match(name):
        raise ViewError(f"{at}.name", "a column name starts with a letter and has only "
                        "letters, digits and _")
    collection = node.get("collection", False)
    if not isinstance(collection, bool):
        raise ViewError(f"{at}.collection", "must be true or false")
    kind = node.get("type")
    return Column(name, str(node.get("path")), _path(node, at, constants), collection,
                  kind if isinstance(kind, str) else None)


def _unique(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ViewError("select", f"the column name {name!r} is used twice")
        seen.add(name)


def _constants(given: Any) -> dict[str, Any]:
    if not isinstance(given, list):
        raise ViewError("constant", "must be a list of objects")
    constants: dict[str, Any] = {}
    for i, constant in enumerate(given):
        at = f"constant[{i}]"
        name = constant.get("name") if isinstance(constant, dict) else None
        if not isinstance(name, str) or not NAME.match(name):
            raise ViewError(f"{at}.name", "a constant needs a name (a letter, then "
                            "letters, digits and _)")
        values = [k for k in constant if k.startswith("value")]
        if len(values) != 1:
            raise ViewError(at, "a constant has exactly one value[x]")
        constants[name] = _constant_value(values[0], constant[values[0]])
    return constants


def _constant_value(key: str, value: Any) -> Any:
    if key == "valueDecimal" and isinstance(value, int | float):
        return Decimal(str(value))
    return value

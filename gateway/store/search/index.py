"""Index extraction: the search index rows of one resource, per index table.

Written in the same transaction as the resource version (``indexing.update_index``, the
projection's, the write group's and the bulk load's multi-row writes): it is on every
write's hot path.

Every parameter of the registry is compiled once, at import, into an extractor: a getter
that walks the parameter's ``paths`` (dotted element paths over the resource JSON, lists
flattened at every step; or its own ``extract``), and an emitter per search parameter type
that appends finished rows by element shape (CodeableConcept, Coding, Identifier,
ContactPoint, HumanName, Address, Period, Quantity, Reference, primitives). Rows are made as
tuples in their index table's column order (``index_values``: what the projector's COPY
needs, and cheap to hash for the duplicate check); ``index_rows`` gives them as
``{"param": name, ...}`` dicts. Which parameters can have values depends only on which
top-level elements a resource has, so that choice is cached per tuple of element names;
string normalisation and date ranges are cached per value. A malformed element is not
indexed (validation reports it). ``tests/store/frozen_index.py`` keeps the plain walk these
rows must equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from gateway.store.search.params import REGISTRY, ParamDef
from gateway.store.search.values import MAX_MS, MIN_MS, date_range, normalise

Row = dict[str, Any]
Rows = list[Row]
Values = tuple[Any, ...]  # one row: the parameter name, then its table's columns in order
Resource = dict[str, Any]
Emit = Callable[[Any, list[Values]], None]
Extract = Callable[[Resource], list[Values]]
COLUMNS = {"token": ("param", "system", "code", "text"),
           "string": ("param", "value_norm", "value"),
           "date": ("param", "low", "high"),
           "reference": ("param", "target_type", "target_id", "url"),
           "quantity": ("param", "value", "system", "code", "unit"),
           "uri": ("param", "value"),
           "number": ("param", "value"),
           "composite": ("param", "system", "code", "v_system", "v_code", "v_value", "v_low",
                         "v_high", "v_string")}
NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")
MALFORMED = (ValueError, TypeError, AttributeError)
CACHE_SIZE = 4096  # entries per value cache; emptied when full
CACHED_LENGTH = 256  # longer strings are normalised every time (bounded memory)


def index_rows(resource: Resource) -> dict[str, Rows]:
    """Rows for every parameter of the resource's type (``_id`` lives on the resource row)."""
    return {kind: list(map(_AS_DICT[kind], rows)) for kind, rows in index_values(resource).items()}


# a row tuple as the dict ``index_rows`` gives (spelt out: ~4x faster than dict(zip(…)))
_AS_DICT: dict[str, Callable[[Values], Row]] = {
    "token": lambda r: {"param": r[0], "system": r[1], "code": r[2], "text": r[3]},
    "string": lambda r: {"param": r[0], "value_norm": r[1], "value": r[2]},
    "date": lambda r: {"param": r[0], "low": r[1], "high": r[2]},
    "reference": lambda r: {"param": r[0], "target_type": r[1], "target_id": r[2],
                            "url": r[3]},
    "quantity": lambda r: {"param": r[0], "value": r[1], "system": r[2], "code": r[3],
                           "unit": r[4]},
    "uri": lambda r: {"param": r[0], "value": r[1]},
    "number": lambda r: {"param": r[0], "value": r[1]},
    "composite": lambda r: {"param": r[0], "system": r[1], "code": r[2], "v_system": r[3],
                            "v_code": r[4], "v_value": r[5], "v_low": r[6], "v_high": r[7],
                            "v_string": r[8]},
}
assert all(tuple(_AS_DICT[kind](COLUMNS[kind])) == COLUMNS[kind] for kind in COLUMNS)


def index_values(resource: Resource) -> dict[str, list[Values]]:
    """``index_rows`` as tuples: per index table, each row's parameter name and column
    values in the table's column order (after ``res_type`` and ``res_id``)."""
    plan = _PLANS.get(resource.get("resourceType", ""))
    if plan is None:
        return {}
    out: dict[str, list[Values]] = {}
    for kind, extract in plan.select(resource):
        rows = extract(resource)
        if rows:
            found = out.get(kind)
            if found is None:
                out[kind] = rows
            else:
                found.extend(rows)
    return out


class Plan:
    """One resource type's extractors in registry order, each with the top-level elements
    its paths start at or its ``extract`` reads (empty: always run)."""

    def __init__(self, params: list[ParamDef]) -> None:
        self.entries = [(_roots(d), (d.type, compile_param(d))) for d in params
                        if d.name != "_id"]
        self.chosen: dict[tuple[str, ...], list[tuple[str, Extract]]] = {}

    def select(self, resource: Resource) -> list[tuple[str, Extract]]:
        names = tuple(resource)
        chosen = self.chosen.get(names)
        if chosen is None:
            if len(self.chosen) >= CACHE_SIZE:
                self.chosen.clear()
            chosen = [entry for roots, entry in self.entries
                      if not roots or not roots.isdisjoint(names)]
            self.chosen[names] = chosen
        return chosen


def _roots(definition: ParamDef) -> frozenset[str]:
    if definition.extract is not None:
        return frozenset(definition.reads)
    return frozenset(path.split(".")[0] for path in definition.paths)


def compile_param(definition: ParamDef) -> Extract:
    """The rows of one parameter for a resource: values found, filtered by ``where``,
    converted, duplicates dropped (first kept)."""
    get = definition.extract or _getter(definition.paths)
    where = None if definition.extract else definition.where
    emit = EMITTERS[definition.type](definition)

    def extract(resource: Resource) -> list[Values]:
        found = get(resource)
        if where is not None:
            found = [value for value in found if where(value)]
        rows: list[Values] = []
        for value in found:
            try:
                emit(value, rows)
            except MALFORMED:
                continue  # the rows it appended before failing stay, as the walk had them
        return _unique(rows) if rows else rows

    return extract


def _unique(rows: list[Values]) -> list[Values]:
    if len(rows) == 1:  # unique; hashed all the same: an unhashable value raises TypeError
        hash(rows[0])
        return rows
    seen: set[Values] = set()
    out: list[Values] = []
    for row in rows:
        if row not in seen:
            seen.add(row)
            out.append(row)
    return out


# -- walking paths ------------------------------------------------------------------------------

def _getter(paths: tuple[str, ...]) -> Callable[[Resource], list[Any]]:
    steps = [tuple(path.split(".")) for path in paths]
    if len(steps) == 1 and len(steps[0]) == 1:
        name = steps[0][0]

        def element(resource: Resource) -> list[Any]:
            value = resource.get(name)
            if value is None:
                return []
            return _leaves(value, []) if isinstance(value, list) else [value]

        return element

    def walk_all(resource: Resource) -> list[Any]:
        found: list[Any] = []
        for path in steps:
            walk(resource, path, found)
        return found

    return walk_all


def walk(resource: Resource, path: tuple[str, ...], out: list[Any]) -> None:
    """Append the values at ``path`` (lists flattened at every step, nulls skipped) in
    document order."""
    nodes: list[Any] = [resource]
    for step in path:
        following: list[Any] = []
        for node in nodes:
            if isinstance(node, dict):
                value = node.get(step)
                if isinstance(value, list):
                    _leaves(value, following)
                elif value is not None:
                    following.append(value)
        if not following:
            return
        nodes = following
    out.extend(nodes)


def _leaves(items: list[Any], out: list[Any]) -> list[Any]:
    for item in items:
        if isinstance(item, list):
            _leaves(item, out)
        elif item is not None:
            out.append(item)
    return out


# -- value caches ----------------------------------------------------------------------------

_NORMALISED: dict[str, str] = {}
_RANGES: dict[str, tuple[int, int]] = {}


def _normalise(text: str) -> str:
    found = _NORMALISED.get(text)
    if found is None:
        found = normalise(text)
        if len(_NORMALISED) >= CACHE_SIZE:
            _NORMALISED.clear()
        if len(text) <= CACHED_LENGTH:  # codes and displays repeat; long free text does not
            _NORMALISED[text] = found
    return found


def _date_range(value: str) -> tuple[int, int]:
    found = _RANGES.get(value)
    if found is None:
        found = date_range(value)
        if len(_RANGES) >= CACHE_SIZE:
            _RANGES.clear()
        _RANGES[value] = found
    return found


# -- emitters by search parameter type --------------------------------------------------------

def _token(definition: ParamDef) -> Emit:
    """CodeableConcept, Coding, Identifier, ContactPoint, code, boolean."""
    name = definition.name

    def row(system: Any, code: Any, text: Any) -> Values:
        return (name, system, code, _normalise(text) if text else None)

    def emit(value: Any, rows: list[Values]) -> None:
        if isinstance(value, bool):
            rows.append(row(None, "true" if value else "false", None))
        elif isinstance(value, str | int | float):
            rows.append(row(None, str(value), None))
        elif isinstance(value, dict):
            if "coding" in value or ("text" in value and "value" not in value):
                text = value.get("text")
                for coding in value.get("coding", []):
                    rows.append(row(coding.get("system"), coding.get("code"),
                                    text or coding.get("display")))
                if not value.get("coding") and text:
                    rows.append(row(None, None, text))
            elif "code" in value:
                rows.append(row(value.get("system"), value.get("code"), value.get("display")))
            elif "value" in value:
                type_text = (value.get("type") or {}).get("text")
                rows.append(row(value.get("system"), str(value["value"]), type_text))

    return emit


def tokens(value: Any) -> Iterator[tuple[Any, Any, Any]]:
    """(system, code, text) of a token value, text as found (composites read these)."""
    if isinstance(value, bool):
        yield None, "true" if value else "false", None
    elif isinstance(value, str | int | float):
        yield None, str(value), None
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value):
            text = value.get("text")
            for coding in value.get("coding", []):
                yield coding.get("system"), coding.get("code"), text or coding.get("display")
            if not value.get("coding") and text:
                yield None, None, text
        elif "code" in value:
            yield value.get("system"), value.get("code"), value.get("display")
        elif "value" in value:
            type_text = (value.get("type") or {}).get("text")
            yield value.get("system"), str(value["value"]), type_text


def _string(definition: ParamDef) -> Emit:
    """A string, or every text part of a HumanName / Address."""
    name = definition.name

    def emit(value: Any, rows: list[Values]) -> None:
        if isinstance(value, str):
            rows.append((name, _normalise(value)[:512], value[:512]))
        elif isinstance(value, dict):
            parts = NAME_PARTS if "family" in value or "given" in value else ADDRESS_PARTS
            for part in parts:
                item = value.get(part)
                for text in item if isinstance(item, list) else [item]:
                    if isinstance(text, str):
                        rows.append((name, _normalise(text)[:512], text[:512]))

    return emit


def ranges(value: Any) -> list[tuple[int, int]]:
    """``[low, high)`` of a date/dateTime/instant or a Period (open ends are the extremes)."""
    if isinstance(value, str):
        return [_date_range(value)]
    if isinstance(value, dict) and ("start" in value or "end" in value):
        start, end = value.get("start"), value.get("end")
        return [(_date_range(start)[0] if start else MIN_MS,
                 _date_range(end)[1] if end else MAX_MS)]
    return []


def _date(definition: ParamDef) -> Emit:
    name = definition.name

    def emit(value: Any, rows: list[Values]) -> None:
        for low, high in ranges(value):
            rows.append((name, low, high))

    return emit


def reference_target(ref: str, rtype_hint: str | None) -> tuple[str | None, str | None, str | None]:
    """(target type, target id, url) of a reference string; url for non-local forms."""
    ref = ref.split("/_history/")[0]
    parts = ref.split("/")
    if ref.startswith(("http://", "https://", "urn:")):
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2], parts[-1], ref
        return None, None, ref
    if len(parts) == 2:
        return parts[0], parts[1], None
    if len(parts) == 1 and not ref.startswith("#"):
        return rtype_hint, ref, None
    return None, None, ref


def _reference(definition: ParamDef) -> Emit:
    name, targets = definition.name, definition.targets

    def emit(value: Any, rows: list[Values]) -> None:
        if isinstance(value, dict) and value.get("url") and "valueReference" in value:
            value = value["valueReference"]  # an extension holding a Reference
        ref = value if isinstance(value, str) else value.get("reference")
        if not isinstance(ref, str) or not ref:
            return
        hint = None if isinstance(value, str) else value.get("type")
        ttype, tid, url = reference_target(ref, hint)
        if ttype is not None and targets and ttype not in targets:
            return
        rows.append((name, ttype, tid, url))

    return emit


def _quantity(definition: ParamDef) -> Emit:
    name = definition.name

    def emit(value: Any, rows: list[Values]) -> None:
        if isinstance(value, dict) and isinstance(value.get("value"), int | float):
            rows.append((name, float(value["value"]), value.get("system"), value.get("code"),
                         value.get("unit")))

    return emit


def _number(definition: ParamDef) -> Emit:
    name = definition.name

    def emit(value: Any, rows: list[Values]) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            rows.append((name, float(value)))

    return emit


def _uri(definition: ParamDef) -> Emit:
    name = definition.name

    def emit(value: Any, rows: list[Values]) -> None:
        if isinstance(value, str):
            rows.append((name, value))

    return emit


def _composite(definition: ParamDef) -> Emit:
    """A (coding, value) pair from the parameter's ``extract``: the coding's token and the
    value as the second component's type."""
    name, kind = definition.name, definition.components[1]

    def emit(pair: Any, rows: list[Values]) -> None:
        coding, value = pair
        system, code = coding.get("system"), coding.get("code")
        # (param, system, code, v_system, v_code, v_value, v_low, v_high, v_string)
        if kind == "quantity":
            if isinstance(value, dict) and isinstance(value.get("value"), int | float):
                rows.append((name, system, code, value.get("system"), value.get("code"),
                             float(value["value"]), None, None, None))
        elif kind == "token":
            for v_system, v_code, _text in tokens(value):
                rows.append((name, system, code, v_system, v_code, None, None, None, None))
        elif kind == "date":
            for low, high in ranges(value):
                rows.append((name, system, code, None, None, None, low, high, None))
        elif kind == "string":
            rows.append((name, system, code, None, None, None, None, None,
                         _normalise(value)[:512]))

    return emit


EMITTERS: dict[str, Callable[[ParamDef], Emit]] = {
    "token": _token, "string": _string, "date": _date, "reference": _reference,
    "quantity": _quantity, "number": _number, "uri": _uri, "composite": _composite}
_PLANS = {rtype: Plan(list(params.values())) for rtype, params in REGISTRY.items()}

"""One search parameter (name with modifier or chain, value) → a SQL filter on resource ids.

``Filter`` is ``(negated, subquery of res_id)``: the caller keeps the resources whose id is
(or, negated, is not) in the subquery. Comma-separated values are OR-ed inside one filter;
repeated parameters become several filters, AND-ed by the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, not_, or_, select, true

from gateway.security.access import Restriction
from gateway.store import schema as s
from gateway.store.search import params as registry
from gateway.store.search.params import ParamDef
from gateway.store.search.values import (
    TOP,
    date_range,
    decimal_range,
    normalise,
    prefixed,
    split_escaped,
    split_or,
)

MODIFIERS = {
    "token": {"not", "text", "missing"},
    "string": {"exact", "contains", "missing"},
    "date": {"missing"}, "quantity": {"missing"}, "number": {"missing"},
    "uri": {"below", "missing"}, "reference": {"missing"}, "composite": {"missing"},
}


class BadParam(ValueError):
    """A parameter the server cannot apply; ``code`` is the OperationOutcome issue code."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Filter:
    negated: bool
    ids: Select[Any]  # selects one column: the matching resource ids
    rank: int = 3  # selectivity guess: the lowest-ranked positive filter drives the query


RANK = {"reference": 0, "token": 1, "string": 2, "uri": 2}


def build(rtype: str, name: str, value: str, base_url: str | None = None,
          restrict: Restriction | None = None) -> Filter:
    """The filter for ``name=value`` on ``rtype`` (raises BadParam). ``restrict``: the
    resources a chain or ``_has`` goes through must be visible too, or their existence
    would show through the filter."""
    if name.startswith("_has:"):
        return Filter(False, _has(rtype, name, value, base_url, restrict), 0)
    head, _, chain = name.partition(".")
    pname, _, modifier = head.partition(":")
    definition = registry.lookup(rtype, pname)
    if definition is None:
        raise BadParam(f"unknown search parameter '{pname}' for {rtype}", "not-supported")
    if chain:
        return Filter(False, _chained(rtype, definition, modifier, chain, value, base_url,
                                      restrict), 0)
    if modifier == "missing":
        return _missing(rtype, definition, value)
    if definition.type == "reference" and modifier and modifier[0].isupper():
        return Filter(False, _reference_ids(rtype, definition, value, modifier, base_url), 0)
    if modifier and modifier not in MODIFIERS[definition.type]:
        raise BadParam(f"modifier ':{modifier}' is not supported on '{pname}'", "not-supported")
    if definition.name == "_id":
        return _id_filter(rtype, value, negated=modifier == "not")
    if definition.type == "reference":
        return Filter(False, _reference_ids(rtype, definition, value, None, base_url), 0)
    table = s.INDEX_TABLES[definition.type]
    conditions = [CONDITIONS[definition.type](table, definition, v, modifier)
                  for v in _alternatives(value)]
    ids = _ids(table, rtype, definition.name, or_(*conditions))
    return Filter(modifier == "not", ids, RANK.get(definition.type, 3))


def _alternatives(value: str) -> list[str]:
    parts = split_or(value)
    if not any(parts):
        raise BadParam("empty search value")
    return parts


def _ids(table: Any, rtype: str, pname: str, condition: ColumnElement[bool]) -> Select[Any]:
    return select(table.c.res_id).where(table.c.res_type == rtype, table.c.param == pname,
                                        condition)


def live_ids(rtype: str) -> Select[Any]:
    r = s.resource.c
    return select(r.res_id).where(r.res_type == rtype, r.deleted == false())


def positive_ids(rtype: str, flt: Filter) -> Select[Any]:
    """The ids a filter keeps, as one subquery (for chains and _has)."""
    if not flt.negated:
        return flt.ids
    return live_ids(rtype).where(s.resource.c.res_id.not_in(flt.ids))


def _missing(rtype: str, definition: ParamDef, value: str) -> Filter:
    if value not in ("true", "false"):
        raise BadParam(":missing takes true or false")
    table = s.INDEX_TABLES[definition.type]
    return Filter(value == "true", _ids(table, rtype, definition.name, true()))


def _id_filter(rtype: str, value: str, *, negated: bool) -> Filter:
    ids = _alternatives(value)
    return Filter(negated, select(s.resource.c.res_id).where(s.resource.c.res_id.in_(ids)), -1)


# -- token, string, uri ----------------------------------------------------------------------

def token_condition(system_col: Any, code_col: Any, text_col: Any, value: str,
                    modifier: str) -> ColumnElement[bool]:
    if modifier == "text":
        like: ColumnElement[bool] = text_col.like(f"%{_escape_like(normalise(value))}%",
                                                  escape="\\")
        return like
    parts = split_escaped(value, "|")
    if len(parts) == 1:
        return code_col == parts[0]  # type: ignore[no-any-return]
    if len(parts) != 2:
        raise BadParam("a token is [system]|[code]")
    system, code = parts
    if not system and not code:
        raise BadParam("empty token")
    if not system:
        return and_(system_col.is_(None), code_col == code)
    if not code:
        return system_col == system  # type: ignore[no-any-return]
    return and_(system_col == system, code_col == code)


def _token(table: Any, _d: ParamDef, value: str, modifier: str) -> ColumnElement[bool]:
    return token_condition(table.c.system, table.c.code, table.c.text, value, modifier)


def string_condition(norm_col: Any, raw_col: Any, value: str,
                     modifier: str) -> ColumnElement[bool]:
    text = split_escaped(value, "\0")[0]
    if modifier == "exact":
        return raw_col == text  # type: ignore[no-any-return]
    norm = normalise(text)
    if modifier == "contains":
        return norm_col.like(f"%{_escape_like(norm)}%", escape="\\")  # type: ignore[no-any-return]
    return and_(norm_col >= norm, norm_col < norm + TOP)


def _string(table: Any, _d: ParamDef, value: str, modifier: str) -> ColumnElement[bool]:
    return string_condition(table.c.value_norm, table.c.value, value, modifier)


def _uri(table: Any, _d: ParamDef, value: str, modifier: str) -> ColumnElement[bool]:
    text = split_escaped(value, "\0")[0]
    if modifier == "below":
        return table.c.value.like(f"{_escape_like(text)}%", escape="\\")  # type: ignore[no-any-return]
    return table.c.value == text  # type: ignore[no-any-return]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- date, number, quantity ------------------------------------------------------------------

def date_condition(low: Any, high: Any, value: str) -> ColumnElement[bool]:
    prefix, text = prefixed(value)
    try:
        pl, ph = date_range(text)
    except ValueError as exc:
        raise BadParam(f"'{text}' is not a valid date") from exc
    match prefix:
        case "eq":
            return and_(low >= pl, high <= ph)
        case "ne":
            return not_(and_(low >= pl, high <= ph))
        case "gt":
            return high > ph  # type: ignore[no-any-return]
        case "lt":
            return low < pl  # type: ignore[no-any-return]
        case "ge":
            return or_(low >= pl, high > ph)
        case "le":
            return or_(low < pl, high <= ph)
        case "sa":
            return low >= ph  # type: ignore[no-any-return]
        case "eb":
            return high <= pl  # type: ignore[no-any-return]
    gap = abs(int(time.time() * 1000) - pl) // 10  # ap: 10% of the distance from now
    return and_(low < ph + gap, high > pl - gap)


def _date(table: Any, _d: ParamDef, value: str, _modifier: str) -> ColumnElement[bool]:
    return date_condition(table.c.low, table.c.high, value)


def number_condition(column: Any, value: str) -> ColumnElement[bool]:
    prefix, text = prefixed(value)
    try:
        number, lo, hi = decimal_range(text)
    except ValueError as exc:
        raise BadParam(f"'{text}' is not a number") from exc
    match prefix:
        case "eq":
            return and_(column >= lo, column < hi)
        case "ne":
            return or_(column < lo, column >= hi)
        case "gt" | "sa":
            return column > number  # type: ignore[no-any-return]
        case "lt" | "eb":
            return column < number  # type: ignore[no-any-return]
        case "ge":
            return column >= number  # type: ignore[no-any-return]
        case "le":
            return column <= number  # type: ignore[no-any-return]
    gap = abs(number) / 10
    return and_(column >= number - gap, column <= number + gap)


def _number(table: Any, _d: ParamDef, value: str, _modifier: str) -> ColumnElement[bool]:
    return number_condition(table.c.value, value)


def quantity_condition(value_col: Any, system_col: Any, code_col: Any, unit_col: Any | None,
                       value: str) -> ColumnElement[bool]:
    parts = split_escaped(value, "|")
    if len(parts) not in (1, 3):
        raise BadParam("a quantity is [prefix]number|system|code")
    conditions = [number_condition(value_col, parts[0])]
    if len(parts) == 3:
        system, code = parts[1], parts[2]
        if system:
            conditions.append(system_col == system)
        if code and system:
            conditions.append(code_col == code)
        elif code:
            conditions.append(or_(code_col == code, unit_col == code) if unit_col is not None
                              else code_col == code)
    return and_(*conditions)


def _quantity(table: Any, _d: ParamDef, value: str, _modifier: str) -> ColumnElement[bool]:
    c = table.c
    return quantity_condition(c.value, c.system, c.code, c.unit, value)


# -- composite --------------------------------------------------------------------------------

def _composite(table: Any, definition: ParamDef, value: str,
               _modifier: str) -> ColumnElement[bool]:
    parts = split_escaped(value.replace("\\$", "\0"), "$")
    if len(parts) != 2:
        raise BadParam(f"'{definition.name}' takes code$value")
    code, second = (part.replace("\0", "\\$") for part in parts)
    c = table.c
    first = token_condition(c.system, c.code, None, code, "")
    kind = definition.components[1]
    if kind == "quantity":
        other = quantity_condition(c.v_value, c.v_system, c.v_code, None, second)
    elif kind == "token":
        other = token_condition(c.v_system, c.v_code, None, second, "")
    elif kind == "date":
        other = date_condition(c.v_low, c.v_high, second)
    else:
        other = string_condition(c.v_string, c.v_string, second, "")
    return and_(first, other)


CONDITIONS = {"token": _token, "string": _string, "uri": _uri, "date": _date,
              "number": _number, "quantity": _quantity, "composite": _composite}


# -- references, chains, _has ----------------------------------------------------------------

def _reference_ids(rtype: str, definition: ParamDef, value: str, type_modifier: str | None,
                   base_url: str | None) -> Select[Any]:
    conditions = [_reference_condition(definition, v, type_modifier, base_url)
                  for v in _alternatives(value)]
    return _ids(s.idx_reference, rtype, definition.name, or_(*conditions))


def _reference_condition(definition: ParamDef, value: str, type_modifier: str | None,
                         base_url: str | None) -> ColumnElement[bool]:
    ref = s.idx_reference.c
    value = value.split("/_history/")[0]
    if type_modifier:
        return and_(ref.target_type == type_modifier, ref.target_id == value)
    if value.startswith(("http://", "https://", "urn:")):
        local = _local_part(value, base_url)
        if local is None:
            return ref.url == value
        return or_(ref.url == value, and_(ref.target_type == local[0],
                                          ref.target_id == local[1]))
    parts = value.split("/")
    if len(parts) == 2 and parts[0][:1].isupper():
        return and_(ref.target_type == parts[0], ref.target_id == parts[1])
    if len(parts) != 1:
        raise BadParam(f"'{definition.name}' takes Type/id, an id or an absolute URL")
    if len(definition.targets) == 1:
        return and_(ref.target_type == definition.targets[0], ref.target_id == value)
    return ref.target_id == value


def _local_part(url: str, base_url: str | None) -> tuple[str, str] | None:
    if base_url and not url.startswith(base_url.rstrip("/") + "/"):
        return None
    parts = url.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None


def _chained(rtype: str, definition: ParamDef, type_modifier: str, chain: str, value: str,
             base_url: str | None, restrict: Restriction | None) -> Select[Any]:
    if definition.type != "reference":
        raise BadParam(f"'{definition.name}' is not a reference: it cannot be chained")
    targets = [type_modifier] if type_modifier else [
        t for t in definition.targets if registry.lookup(t, chain.split(".")[0].split(":")[0])]
    if not targets:
        raise BadParam(f"no target type of '{definition.name}' has '{chain}'", "not-supported")
    ref = s.idx_reference.c
    alternatives = [and_(ref.target_type == target,
                         ref.target_id.in_(positive_ids(target, build(target, chain, value,
                                                                      base_url, restrict))),
                         _visible(restrict, target, ref.target_id))
                    for target in targets]
    return _ids(s.idx_reference, rtype, definition.name, or_(*alternatives))


def _has(rtype: str, name: str, value: str, base_url: str | None,
         restrict: Restriction | None) -> Select[Any]:
    """``_has:Observation:subject:code=X``: the targets of Observation.subject among
    Observations with code X (the inner name may be another ``_has`` or a chain)."""
    parts = name.split(":", 3)
    if len(parts) != 4 or not parts[1] or not parts[2] or not parts[3]:
        raise BadParam("_has is _has:Type:reference:parameter")
    _, source, link, inner = parts
    definition = registry.lookup(source, link)
    if definition is None or definition.type != "reference":
        raise BadParam(f"'{link}' is not a reference parameter of {source}", "not-supported")
    ref = s.idx_reference.c
    sources = positive_ids(source, build(source, inner, value, base_url, restrict))
    return select(ref.target_id).where(ref.res_type == source, ref.param == link,
                                       ref.target_type == rtype, ref.res_id.in_(sources),
                                       _visible(restrict, source, ref.res_id))


def _visible(restrict: Restriction | None, rtype: str, id_column: Any) -> ColumnElement[bool]:
    if restrict is None:
        return true()
    from gateway.store.restrict import visible

    return visible(restrict, rtype, id_column)

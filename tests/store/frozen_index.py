"""The index extraction as it was before the compiled extractors (commit 8461a68), frozen
as the reference that ``test_store_index_equivalence`` compares ``index_rows`` against.
Do not optimise this file: its worth is that it stays the simple, obviously-right walk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.store.search.params import REGISTRY, ParamDef
from gateway.store.search.values import date_range, normalise, period_range

Row = dict[str, Any]
NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def index_rows(resource: dict[str, Any]) -> dict[str, list[Row]]:
    """Rows for every parameter of the resource's type (``_id`` lives on the resource row)."""
    out: dict[str, list[Row]] = {}
    for definition, roots in _PLANS.get(resource.get("resourceType", ""), ()):
        if roots and not any(root in resource for root in roots):
            continue  # none of its elements is present
        rows = list(_rows(definition, resource))
        if rows:
            out.setdefault(definition.type, []).extend(
                {"param": definition.name, **row} for row in _unique(rows))
    return out


def _plans() -> dict[str, list[tuple[ParamDef, frozenset[str]]]]:
    """Per type: each indexed parameter with the top-level elements its paths start at
    (empty: always evaluate, for parameters with their own ``extract``)."""
    return {rtype: [(d, frozenset() if d.extract else frozenset(p.split(".")[0]
                                                                for p in d.paths))
                    for d in params.values() if d.name != "_id"]
            for rtype, params in REGISTRY.items()}


_PLANS = _plans()


def values(definition: ParamDef, resource: dict[str, Any]) -> list[Any]:
    if definition.extract is not None:
        return definition.extract(resource)
    found = [v for path in definition.paths for v in walk(resource, path.split("."))]
    return [v for v in found if definition.where(v)] if definition.where else found


def walk(node: Any, steps: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from walk(item, steps)
        return
    if not steps:
        if node is not None:
            yield node
        return
    if isinstance(node, dict):
        yield from walk(node.get(steps[0]), steps[1:])


def _rows(definition: ParamDef, resource: dict[str, Any]) -> Iterator[Row]:
    convert = CONVERTERS[definition.type]
    for value in values(definition, resource):
        try:
            yield from convert(definition, value)
        except (ValueError, TypeError, AttributeError):
            continue  # a malformed element is not indexed (validation reports it)


def _unique(rows: list[Row]) -> list[Row]:
    seen, out = set(), []
    for row in rows:
        key = tuple(sorted(row.items()))
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


# -- converters by search parameter type --------------------------------------------------------

def tokens(value: Any) -> Iterator[tuple[str | None, str | None, str | None]]:
    """(system, code, text) for CodeableConcept, Coding, Identifier, ContactPoint, code."""
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


def _token(_d: ParamDef, value: Any) -> Iterator[Row]:
    for system, code, text in tokens(value):
        yield {"system": system, "code": code,
               "text": normalise(text) if text else None}


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        parts = NAME_PARTS if "family" in value or "given" in value else ADDRESS_PARTS
        for part in parts:
            item = value.get(part)
            for text in item if isinstance(item, list) else [item]:
                if isinstance(text, str):
                    yield text


def _string(_d: ParamDef, value: Any) -> Iterator[Row]:
    for text in strings(value):
        yield {"value_norm": normalise(text)[:512], "value": text[:512]}


def ranges(value: Any) -> Iterator[tuple[int, int]]:
    if isinstance(value, str):
        yield date_range(value)
    elif isinstance(value, dict) and ("start" in value or "end" in value):
        yield period_range(value.get("start"), value.get("end"))


def _date(_d: ParamDef, value: Any) -> Iterator[Row]:
    for low, high in ranges(value):
        yield {"low": low, "high": high}


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


def _reference(definition: ParamDef, value: Any) -> Iterator[Row]:
    if isinstance(value, dict) and value.get("url") and "valueReference" in value:
        value = value["valueReference"]  # an extension holding a Reference
    ref = value if isinstance(value, str) else value.get("reference")
    if not isinstance(ref, str) or not ref:
        return
    hint = None if isinstance(value, str) else value.get("type")
    ttype, tid, url = reference_target(ref, hint)
    if ttype is not None and definition.targets and ttype not in definition.targets:
        return
    yield {"target_type": ttype, "target_id": tid, "url": url}


def _quantity(_d: ParamDef, value: Any) -> Iterator[Row]:
    if isinstance(value, dict) and isinstance(value.get("value"), int | float):
        yield {"value": float(value["value"]), "system": value.get("system"),
               "code": value.get("code"), "unit": value.get("unit")}


def _number(_d: ParamDef, value: Any) -> Iterator[Row]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        yield {"value": float(value)}


def _uri(_d: ParamDef, value: Any) -> Iterator[Row]:
    if isinstance(value, str):
        yield {"value": value}


def _composite(definition: ParamDef, pair: Any) -> Iterator[Row]:
    coding, value = pair
    base = {"system": coding.get("system"), "code": coding.get("code"), "v_system": None,
            "v_code": None, "v_value": None, "v_low": None, "v_high": None, "v_string": None}
    kind = definition.components[1]
    if kind == "quantity":
        for q in _quantity(definition, value):
            yield {**base, "v_value": q["value"], "v_system": q["system"], "v_code": q["code"]}
    elif kind == "token":
        for system, code, _text in tokens(value):
            yield {**base, "v_system": system, "v_code": code}
    elif kind == "date":
        for low, high in ranges(value):
            yield {**base, "v_low": low, "v_high": high}
    elif kind == "string":
        yield {**base, "v_string": normalise(value)[:512]}


CONVERTERS = {"token": _token, "string": _string, "date": _date, "reference": _reference,
              "quantity": _quantity, "number": _number, "uri": _uri, "composite": _composite}

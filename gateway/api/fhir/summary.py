"""``_summary`` and ``_elements``: pure functions that trim a resource for display.

Summary elements and mandatory elements come from the R4B model metadata
(``summary_element_property`` / ``element_required``). Trimmed resources are marked with
the ``SUBSETTED`` tag as R4 requires.
"""

from __future__ import annotations

from functools import cache

from gateway import fhir
from gateway.store import Resource

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "Resource encoded in summary mode"}
SUMMARY_MODES = ("true", "false", "text", "data", "count")
ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _elements_with(resource_type: str, flag: str) -> frozenset[str]:
    try:
        model = fhir.model_of(resource_type)
    except (KeyError, ValueError):
        return frozenset()
    names = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(flag):
            names.add(info.alias or name)
            names.add(f"_{info.alias or name}")
    return frozenset(names)


def summary_elements(resource_type: str) -> frozenset[str]:
    return _elements_with(resource_type, "summary_element_property") | ALWAYS


def required_elements(resource_type: str) -> frozenset[str]:
    return _elements_with(resource_type, "element_required") | ALWAYS


def _keep(resource: Resource, names: frozenset[str]) -> Resource:
    out = {k: v for k, v in resource.items() if k in names}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def apply_summary(resource: Resource, mode: str | None) -> Resource:
    if mode in (None, "false", "count"):
        return resource
    rtype = resource["resourceType"]
    if mode == "true":
        return _keep(resource, summary_elements(rtype))
    if mode == "text":
        return _keep(resource, required_elements(rtype) | {"text"})
    return _keep(resource, frozenset(resource) - {"text"})  # data


def parse_elements(value: str | None) -> frozenset[str] | None:
    if not value:
        return None
    names = {part.strip().split(".", 1)[0] for part in value.split(",")}
    return frozenset(n for n in names if n)


def apply_elements(resource: Resource, names: frozenset[str] | None) -> Resource:
    if names is None:
        return resource
    keep = names | {f"_{n}" for n in names} | required_elements(resource["resourceType"])
    return _keep(resource, keep)

"""Site-file field overrides (``Site.overrides``), applied where the mapping reads the field.

An override says: for ``target``, read the value at ``source`` (an HL7 path such as
``OBX-3.1``), when the tiny condition ``when`` holds, through the named ``function``.
``gateway.adapters.functions`` (``apply_override``, here with the condition parsed once)
evaluates one against the segment being mapped (the OBX for Observation targets, the SPM
for Specimen targets, the PID for
``Patient.identifier``); a path of another segment reads that segment's first occurrence.
The first override of a target that yields a value wins; none → the standard mapping.

What the value becomes, per target (docs/mapping.md, "Site overrides"):

- ``Observation.code``, ``Specimen.type``: the code of the primary coding, in ``system``
  (``local`` or absent: the system the field names, local names → the site's code system;
  a table 0396 name such as ``LN``; or a URI), then mapped through the site's code map as
  any OBX-3; the other triplet of the field stays as the alternate coding.
- ``Observation.valueQuantity.unit``: the unit (code and text), then mapped as OBX-6.
- ``Observation.status``: an OBX-11 code (table 0085).
- ``Observation.interpretation``: an OBX-8 code (table 0078).
- ``Observation.effectiveDateTime``, ``Specimen.collection.collectedDateTime``: a DTM.
- ``Observation.method``: a code in ``system`` (default: the site's code system).
- ``Specimen.identifier``: a specimen identifier put first (a DIN in clear, anything else
  hashed like SPM-2), so that the Specimen id follows it when it is a DIN.
- ``Patient.identifier``: one more PID-3 identifier (CX-1 = the value, assigning authority
  the site's first MRN authority, else its first facility; type MR) before the pseudonym
  is resolved.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from gateway.adapters.functions import FUNCTIONS, Clause, field_value, parse_condition
from gateway.adapters.site import FieldOverride, Site
from gateway.hl7.parser import Composite, Message, Segment, escape
from gateway.mapping import datatypes as dt

JSON = dict[str, Any]
URI_PREFIXES = ("http://", "https://", "urn:")


def override(site: Site, target: str, segment: Segment,
             message: Message) -> tuple[str, FieldOverride] | None:
    """(value, rule) of the first override of ``target`` that applies to ``segment``."""
    if not site.overrides:
        return None
    for rule in _by_target(site).get(target, ()):
        value = _apply(rule, segment, message)
        if value:
            return value, rule
    return None


def _apply(rule: FieldOverride, segment: Segment, message: Message) -> str | None:
    """``functions.apply_override`` with the condition parsed once per text (the hot path:
    every OBX of a site with overrides)."""
    if rule.when and not all(c.holds(field_value(c.path, segment, message))
                             for c in _condition(rule.when)):
        return None
    value = field_value(rule.source, segment, message)
    if not value:
        return None
    return FUNCTIONS[rule.function](value) if rule.function else value


@lru_cache(maxsize=256)
def _condition(text: str) -> tuple[Clause, ...]:
    return parse_condition(text)


_TARGETS: dict[int, tuple[Site, dict[str, list[FieldOverride]]]] = {}


def _by_target(site: Site) -> dict[str, list[FieldOverride]]:
    """The site's overrides grouped by target, once per Site object."""
    entry = _TARGETS.get(id(site))
    if entry is None or entry[0] is not site:
        if len(_TARGETS) >= 64:
            _TARGETS.clear()
        grouped: dict[str, list[FieldOverride]] = {}
        for rule in site.overrides:
            grouped.setdefault(rule.target, []).append(rule)
        entry = _TARGETS[id(site)] = (site, grouped)
    return entry[1]


def coded(site: Site, comp: Composite, value: str, rule: FieldOverride, *,
          code_map: bool = False) -> JSON | None:
    """The CodeableConcept of a coded field whose primary code an override replaced."""
    local = not rule.system or rule.system.lower() == "local"
    uri = rule.system if rule.system and rule.system.startswith(URI_PREFIXES) else None
    name = "L" if local or uri else rule.system or ""
    cc = dt.cwe_to_codeable_concept(recoded(comp, value, rule.source, name, keep=not rule.system),
                                    site, code_map=code_map)
    if cc is not None and uri:
        for coding in cc.get("coding", ()):
            if coding["code"] == value and coding["system"] == site.local_system:
                coding["system"] = uri
    return cc


def recoded(comp: Composite, value: str, source: str, name: str, *, keep: bool) -> Composite:
    """``comp`` (a CWE) with ``value`` as the primary code (coding-system name ``name``, or
    the original one when ``keep``). When ``source`` points into the alternate triplet
    (components 4-6), the original primary triplet becomes the alternate."""
    parts = [*comp.parts, *[""] * max(0, 9 - len(comp.parts))]
    from_alternate = _component(source) in (4, 5, 6)
    first, alternate = (parts[3:6], parts[0:3]) if from_alternate else (parts[0:3], parts[3:6])
    parts[0:6] = [escape(value, comp.enc), first[1], first[2] if keep else name, *alternate]
    return Composite(comp.enc.component.join(parts), comp.enc)


def plain_coding(site: Site, value: str, rule: FieldOverride) -> JSON:
    """A CodeableConcept of one code in the override's system (default: the site's)."""
    system = rule.system or ""
    if not system or system.lower() == "local":
        uri = site.local_system
    elif system.startswith(URI_PREFIXES):
        uri = system
    else:
        uri = dt.coding_system(system, site.id)
    return {"coding": [{"system": uri, "code": value}]}


def _component(path: str) -> int:
    _, _, rest = path.partition("-")
    numbers = rest.split(".")
    return int(numbers[1]) if len(numbers) > 1 else 1

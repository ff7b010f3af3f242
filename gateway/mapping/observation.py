"""OBX → Observation (HL7 v2-to-FHIR IG STU1, OBX[Observation] segment map).

The Observation id is deterministic: ``ctx.rid("Observation", order key, OBX-3 as sent,
OBX-4 sub-id)``, where the order key is the keyed hash of the filler (else placer) order
number and "OBX-3 as sent" is the coding-system name and code of its first valued triplet
(``L|GLU``), never the site's mapping of it. A corrected resend (OBX-11 C) therefore lands
on the same id and becomes a new version with status ``corrected``, and so does a replay
after the site's code map changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from gateway.adapters.site import FieldOverride
from gateway.errors import Location, MappingError
from gateway.hl7.parser import Composite, Encoding, Segment, escape
from gateway.mapping import datatypes as dt
from gateway.mapping import tables as t
from gateway.mapping.context import MappingContext, ReportEntry
from gateway.mapping.overrides import coded, override, plain_coding

JSON = dict[str, Any]
LABORATORY = {"coding": [{"system": t.OBSERVATION_CATEGORY, "code": "laboratory",
                          "display": "Laboratory"}]}
VITAL_SIGNS = {"coding": [{"system": t.OBSERVATION_CATEGORY, "code": "vital-signs",
                            "display": "Vital Signs"}]}
UNMAPPED_CODE = "code-invalid"  # report code for local codes missing from the site code map


@dataclass(slots=True)
class Order:
    """What an OBX inherits from its order group (ORC/OBR)."""

    key: str  # keyed hash of the order number (or a message-scoped fallback)
    identifiers: list[JSON] = field(default_factory=list)  # hashed PLAC/FILL identifiers
    collected: str | None = None  # OBR-7
    effective: str | None = None  # OBR-7, else OBR-8
    received: str | None = None  # OBR-14
    issued: str | None = None  # OBR-22, when it is an instant


def at(seg: Segment, seq: int, fld: int, comp: int | None = None) -> Location:
    return Location(seg.name, seq, fld, comp)


def plain(seg: Segment, n: int) -> str:
    """``seg.get(n)`` (field ``n``, component 1), without building a Composite when the raw
    field holds no delimiter or escape character (OBX-2 ``NM``, OBX-11 ``F``, a DTM: the
    hot path)."""
    fields = seg.fields
    value = fields[n] if n < len(fields) else ""
    enc = seg.enc
    if not value or (enc.component not in value and enc.repetition not in value
                     and enc.escape not in value and enc.subcomponent not in value):
        return value
    return seg.get(n)


def where(seg: Segment, seq: int, fld: int) -> str:
    """Report location, e.g. ``OBX[3]-5``."""
    return f"{seg.name}[{seq}]-{fld}"


def time_field(ctx: MappingContext, seg: Segment, seq: int, fld: int,
               value: str | None = None) -> str | None:
    """A DTM/TS field that is not the result itself (OBX-14, OBX-19, OBR-7/8/14/22,
    SPM-17/18): an invalid value is reported (``invalid`` at its position) and left out,
    so that one bad timestamp does not reject the results around it."""
    text = plain(seg, fld) if value is None else value
    if not text:
        return None
    out = dt.dtm_or_reason(text, ctx.site.timezone)
    if out.startswith("!"):
        ctx.warn(where(seg, seq, fld), f"{out[1:]}: left out", code="invalid")
        return None
    return out


def observation_code(ctx: MappingContext, obx: Segment, seq: int,
                     hit: tuple[str, FieldOverride] | None) -> JSON | None:
    """OBX-3 with the site's code map (and ``hit``, the site's override of it, if any); a
    local code without a standard coding is reported."""
    cc = (coded(ctx.site, obx.first(3), *hit, code_map=True) if hit else
          dt.cwe_to_codeable_concept(obx.first(3), ctx.site, code_map=True))
    if cc is None:
        ctx.report.append(ReportEntry("error", "required", where(obx, seq, 3),
                                      "OBX-3 is empty: the observation was not mapped"))
        return None
    if cc.get("coding") and not dt.has_standard_coding(cc):
        if ctx.site.unmapped_codes == "strict":
            raise MappingError(f"{where(obx, seq, 3)}: local observation code not in the "
                               "site's code_map (site unmapped_codes: strict): add it to "
                               "code_map, or send a LOINC code in OBX-3.4-6", segment="OBX",
                               sequence=seq, field=3, code="103")
        ctx.warn(where(obx, seq, 3), "local observation code not in the site code map",
                 code=UNMAPPED_CODE)
    return cc


def value_type(ctx: MappingContext, obx: Segment, seq: int) -> str:
    """OBX-2, or inferred from OBX-5 when missing (reported)."""
    declared = plain(obx, 2).upper()
    if declared:
        return declared
    raw = obx.raw(5)
    if not raw:
        return ""
    inferred = "NM" if dt.NM_PATTERN.match(raw.strip()) else (
        "CWE" if obx.enc.component in raw else "ST")
    ctx.warn(where(obx, seq, 2), f"OBX-2 is empty: value type {inferred} inferred from OBX-5")
    return inferred


def observation_value(ctx: MappingContext, obx: Segment, seq: int, vt: str, unit: JSON
                      ) -> tuple[str, Any] | None:
    """OBX-5 by OBX-2 (``unit``: OBX-6 converted) → (value[x], value), or None (empty,
    dropped or unsupported)."""
    reps = obx.reps(5)
    if not reps:
        return None
    loc = at(obx, seq, 5)
    first = reps[0]
    if len(reps) > 1 and vt not in ("ST", *t.FREE_TEXT_TYPES):
        ctx.warn(where(obx, seq, 5), f"OBX-5 repeats: only the first of {len(reps)} "
                 "repetitions is mapped (FHIR value[x] holds one value)")
    if vt == "NM":
        comparator, number = dt.split_comparator(first.text)
        return "valueQuantity", dt.quantity(dt.nm_to_decimal(number, loc), unit, comparator)
    if vt == "SN":
        if first.c(1) == dt.SN_NOT_COMPARATOR:
            ctx.warn(where(obx, seq, 5), "SN-1 '-' is not a comparator: ignored")
        return dt.sn_to_value(first, unit, loc)
    if vt in ("CE", "CWE", "CNE", "CF"):
        cc = dt.cwe_to_codeable_concept(first, ctx.site)
        return ("valueCodeableConcept", cc) if cc else None
    if vt in ("IS", "ID"):
        return "valueCodeableConcept", {"coding": [{"code": first.text}]}
    return _other_value(ctx, obx, seq, vt, reps, loc, unit)


def _other_value(ctx: MappingContext, obx: Segment, seq: int, vt: str,
                 reps: list[Composite], loc: Location, unit: JSON) -> tuple[str, Any] | None:
    first = reps[0]
    if vt in t.FREE_TEXT_TYPES:
        if ctx.site.privacy.free_text == "drop":
            ctx.info(where(obx, seq, 5), f"{vt} free text dropped (site privacy.free_text: "
                     "drop)", code="suppressed")
            return None
        return "valueString", dt.fhir_string("\n".join(r.text for r in reps))
    if vt == "ST":
        return "valueString", dt.fhir_string("\n".join(r.text for r in reps))
    if vt in ("DT", "DTM", "TS"):
        return "valueDateTime", dt.dtm_to_fhir(first.c(1), ctx.site.timezone, loc)
    if vt == "TM":
        return "valueTime", dt.tm_to_fhir(first.c(1), loc)
    if vt == "NR":
        return "valueRange", dt.nr_to_range(first, unit, loc)
    if vt == "DR":
        return "valuePeriod", _period(first, ctx.site.timezone, loc)
    if vt == "CQ":
        q = dt.cq_to_quantity(first, ctx.site, loc)
        return ("valueQuantity", q) if q else None
    ctx.warn(where(obx, seq, 2), f"value type {vt or '(none)'} is not mapped", "not-supported")
    return None


def _period(comp: Composite, tz: str, loc: Location) -> JSON:
    out: JSON = {}
    for key, i in (("start", 1), ("end", 2)):
        value = comp.c(i)
        if value:
            out[key] = dt.dtm_to_fhir(value, tz, loc)
    return out


def reference_range(obx: Segment, unit: JSON, seq: int) -> list[JSON]:
    """OBX-7: "low-high", "<x", ">x" with the OBX-6 unit; anything else as text."""
    text = plain(obx, 7)
    if not text:
        return []
    return [{k: dict(v) if type(v) is dict else v for k, v in r.items()}
            for r in _reference_range(text, tuple(unit.items()))]


@lru_cache(maxsize=4096)
def _reference_range(text: str, unit_items: tuple[tuple[str, Any], ...]) -> list[JSON]:
    """The conversion, memoised (ranges repeat with their units); callers get a copy."""
    unit = dict(unit_items)
    low, sep, high = text.partition("-")
    loc = Location("OBX", 0, 7)  # only for the error that is caught below
    try:
        if sep and low.strip() and high.strip():
            return [{"low": dt.quantity(dt.nm_to_decimal(low, loc), unit),
                     "high": dt.quantity(dt.nm_to_decimal(high, loc), unit), "text": text}]
        if text[:1] in "<>" and dt.NM_PATTERN.match(text[1:].lstrip("=").strip()):
            bound = "high" if text[0] == "<" else "low"
            value = dt.nm_to_decimal(text[1:].lstrip("=").strip(), loc)
            return [{bound: dt.quantity(value, unit), "text": text}]
    except MappingError:
        pass
    return [{"text": text}]


def interpretation(obx: Segment) -> list[JSON]:
    """OBX-8 (table 0078, repeating) → v3-ObservationInterpretation codings."""
    raw = obx.raw(8)
    if not raw:
        return []
    enc = obx.enc
    return [{"coding": [dict(c) for c in i["coding"]]} for i in _interpretation(
        raw, enc.component, enc.repetition, enc.subcomponent, enc.escape)]


@lru_cache(maxsize=1024)
def _interpretation(raw: str, component: str, repetition: str, subcomponent: str,
                    escape_char: str) -> list[JSON]:
    enc = Encoding(component=component, repetition=repetition, subcomponent=subcomponent,
                   escape=escape_char)
    reps = [Composite(r, enc) for r in raw.split(repetition) if r]
    return [interpretation_concept(rep.c(1), rep.c(2)) for rep in reps if rep.c(1)]


def interpretation_concept(code: str, text: str = "") -> JSON:
    system = t.V3_INTERPRETATION if code in t.INTERPRETATION_V3 else t.V2_SYSTEM.format(
        table="0078")
    coding: JSON = {"system": system, "code": code}
    display = t.INTERPRETATION_DISPLAY.get(code) or text
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def category(code: JSON) -> JSON:
    """vital-signs for the LOINC vital-sign codes (body weight, height, …), else laboratory."""
    for coding in code.get("coding", ()):
        if coding["system"] == t.LOINC and coding["code"] in t.VITAL_SIGNS_LOINC:
            return VITAL_SIGNS
    return LABORATORY


def status(ctx: MappingContext, obx: Segment) -> str:
    """OBX-11 (table 0085), or the site's override of Observation.status."""
    hit = override(ctx.site, "Observation.status", obx, ctx.message)
    code = hit[0] if hit else plain(obx, 11)
    return t.OBSERVATION_STATUS.get(code.strip().upper(), "unknown")


def code_as_sent(obx: Segment, hit: str | None = None) -> str:
    """OBX-3 as the sender wrote it: ``<coding-system name>|<code>`` of the first valued
    triplet (1-3, else 4-6), else an override's value, else ``|<text>``. The identity of a
    result must not move when the site's code map (or its override system) changes."""
    comp = obx.first(3)
    for code_i, name_i in ((1, 3), (4, 6)):
        code = comp.c(code_i).strip()
        if code:
            return f"{comp.c(name_i).strip()}|{code}"
    if hit:
        return f"|{hit}"
    return f"|{comp.c(2).strip()}"


def observation_id(ctx: MappingContext, order: Order, obx: Segment,
                   hit: str | None = None) -> str:
    """Deterministic id from the source's identity (order, OBX-3 as sent, OBX-4 sub-id);
    a repeated (order, code, sub-id) in one message gets an ordinal (2, 3, … in message
    order), counted in ``ctx.ordinals``: constant time per OBX."""
    key = (order.key, code_as_sent(obx, hit), plain(obx, 4))
    n = ctx.ordinals.get(key, 0) + 1
    ctx.ordinals[key] = n
    rid = ctx.rid("Observation", *key) if n == 1 else ctx.rid("Observation", *key, str(n))
    while ("Observation", rid) in ctx.resources:  # only if an ordinal id met another key's
        n += 1
        ctx.ordinals[key] = n
        rid = ctx.rid("Observation", *key, str(n))
    return rid


def build_observation(ctx: MappingContext, obx: Segment, seq: int, order: Order, *,
                      subject: JSON | None = None, specimen: JSON | None = None,
                      notes: list[Segment] | None = None) -> JSON | None:
    """One OBX → an Observation added to ``ctx``; None when OBX-3 is empty (reported)."""
    hit = override(ctx.site, "Observation.code", obx, ctx.message)
    code = observation_code(ctx, obx, seq, hit)
    if code is None:
        return None
    obs: JSON = {"resourceType": "Observation",
                 "id": observation_id(ctx, order, obx, hit[0] if hit else None)}
    if order.identifiers:
        obs["identifier"] = order.identifiers
    obs["status"] = status(ctx, obx)
    obs["category"] = [category(code)]
    obs["code"] = code
    if subject:
        obs["subject"] = subject
    _times(ctx, obx, seq, order, obs)
    _result(ctx, obx, seq, obs)
    if specimen:
        obs["specimen"] = specimen
    _notes(ctx, notes or [], obs)
    return ctx.add(obs)


def _times(ctx: MappingContext, obx: Segment, seq: int, order: Order, obs: JSON) -> None:
    hit = override(ctx.site, "Observation.effectiveDateTime", obx, ctx.message)
    effective = time_field(ctx, obx, seq, 14, hit[0] if hit else None) or order.effective
    if effective:
        obs["effectiveDateTime"] = effective
    issued = time_field(ctx, obx, seq, 19)
    issued = issued if issued and "T" in issued else order.issued
    if issued:
        obs["issued"] = issued


def _result(ctx: MappingContext, obx: Segment, seq: int, obs: JSON) -> None:
    vt = value_type(ctx, obx, seq)
    unit_hit = override(ctx.site, "Observation.valueQuantity.unit", obx, ctx.message)
    unit = dt.units(unit_composite(unit_hit[0], obx) if unit_hit else obx.first(6), ctx.site)
    value = observation_value(ctx, obx, seq, vt, unit)
    if value is not None:
        obs[value[0]] = value[1]
    ranges = reference_range(obx, unit, seq)
    if ranges:
        obs["referenceRange"] = ranges
    hit = override(ctx.site, "Observation.interpretation", obx, ctx.message)
    interp = [interpretation_concept(hit[0])] if hit else interpretation(obx)
    if interp:
        obs["interpretation"] = interp
    hit = override(ctx.site, "Observation.method", obx, ctx.message)
    method = plain_coding(ctx.site, *hit) if hit else (dt.cwe_to_codeable_concept(
        obx.first(17), ctx.site) if obx.raw(17) else None)
    if method:
        obs["method"] = method


def unit_composite(unit: str, obx: Segment) -> Composite:
    """An OBX-6 holding ``unit`` as code and text (a site override of the unit)."""
    text = escape(unit, obx.enc)
    return Composite(f"{text}{obx.enc.component}{text}", obx.enc)


def _notes(ctx: MappingContext, notes: list[Segment], obs: JSON) -> None:
    if not notes:
        return
    if ctx.site.privacy.free_text == "drop":
        ctx.info(f"NTE-3 (line {notes[0].line})", "NTE comments dropped (site "
                 "privacy.free_text: drop)", code="suppressed")
        return
    texts = [dt.fhir_string("\n".join(r.text for r in n.reps(3))) for n in notes]
    kept = [{"text": text} for text in texts if text]
    if kept:
        obs["note"] = kept

"""Converters, one per HL7 v2 datatype (HL7 v2-to-FHIR IG STU1 datatype maps).

Each takes a parsed ``Composite`` (or the text of a primitive) and returns a JSON-ready dict
or string. Bad values raise ``MappingError`` carrying the ERR location (segment, field,
component) passed in as ``at``; values never appear in error texts.

Decimals (NM): a number's text becomes a JSON number: ``int`` when it has no decimal point,
``float`` otherwise. Trailing zeros after the point ("1.50") are therefore not kept on the
wire (1.5): every JSON library the gateway and its consumers use (orjson, json, pydantic)
round-trips plain numbers, while a float subclass or orjson.Fragment carrying the text would
break ``orjson.dumps`` elsewhere. The raw message, with the exact text, stays in the inbox.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from gateway.adapters.site import Site
from gateway.errors import Location, MappingError
from gateway.hl7.parser import Composite
from gateway.mapping import tables as t

JSON = dict[str, Any]

_DTM = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")
NM_PATTERN = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")
# SN-1 → Quantity.comparator; "=", empty and the v2 null '""' mean no comparator.
SN_COMPARATORS = {"<": "<", ">": ">", "<=": "<=", ">=": ">=", "=": None, "": None, '"': None}
# SN-1 "-" is no comparator of HL7 table SN (>, <, >=, <=, =, <>); with SN-3 "-" the IG's
# OBX-5 rule (SN-3 "-" → Range) still applies: a Range, and the caller reports SN-1.
SN_NOT_COMPARATOR = "-"


_ODD_SPACE = re.compile(r"[^\S \r\n\t]")


def fhir_string(value: str) -> str:
    """A FHIR string: whitespace other than space, CR, LF and tab (NBSP, vertical tab, …) is
    not allowed by the R4 schema's string pattern, so it becomes a space."""
    return value if value.isprintable() else _ODD_SPACE.sub(" ", value)


def fail(text: str, at: Location) -> MappingError:
    """A MappingError (AE, 102 data type error) at ``at``."""
    return MappingError(f"{at.segment}[{at.sequence}]-{at.field}: {text}", segment=at.segment,
                        field=at.field, component=at.component, sequence=at.sequence,
                        code="102")


# --- coded values ------------------------------------------------------------------------
def coding_system(name: str, site_id: str) -> str:
    """CWE-3/CWE-6 coding-system name → system URI; local and unknown names are site-scoped."""
    upper = name.upper()
    known = t.CODING_SYSTEMS.get(upper)
    if known:
        return known
    table = t.V2_TABLE_NAME.match(upper)
    if table:
        return t.V2_SYSTEM.format(table=table.group(1))
    base = t.SITE_CODES.format(site=site_id)
    if not name or t.LOCAL_NAME.match(name):
        return base
    return f"{base}:{quote(name, safe='')}"


def is_standard(system: str) -> bool:
    return system in t.STANDARD_SYSTEMS or system.startswith("http://terminology.hl7.org/")


def _coding(code: str, display: str, name: str, version: str, site: Site) -> JSON:
    coding: JSON = {"system": coding_system(name, site.id)}
    if version:
        coding["version"] = version
    coding["code"] = code
    if display:
        coding["display"] = display
    return coding


def _mapped(coding: JSON, name: str, site: Site) -> JSON | None:
    """The site's code_map entry for a local coding (keys ``NAME|code`` or ``code``)."""
    entry = site.code_map.get(f"{name}|{coding['code']}") or site.code_map.get(coding["code"])
    if entry is None:
        return None
    out: JSON = {"system": entry.system, "code": entry.code}
    if entry.display:
        out["display"] = entry.display
    return out


# --- memo of conversions that depend only on (site, raw text) -----------------------------
# Lab codes, units, flags and ranges repeat in every message; their conversions are memoised
# per Site object (a reloaded site file is a new object, so a new memo) and handed out as
# copies, so that no two resources share a mutable dict. Bounded: cleared when full.
_MEMO_SIZE = 4096
_MEMOS: dict[int, tuple[Site, dict[Any, Any]]] = {}
_MISSING = object()


def site_memo(site: Site) -> dict[Any, Any]:
    entry = _MEMOS.get(id(site))
    if entry is None or entry[0] is not site:
        if len(_MEMOS) >= 64:
            _MEMOS.clear()
        entry = _MEMOS[id(site)] = (site, {})
    if len(entry[1]) >= _MEMO_SIZE:
        entry[1].clear()
    return entry[1]


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars); faster than copy.deepcopy."""
    if type(value) is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if type(value) is list:
        return [copy_json(v) for v in value]
    return value


def cwe_to_codeable_concept(comp: Composite, site: Site, *, code_map: bool = False) -> JSON | None:
    """CWE/CE/CNE → CodeableConcept: triplets 1-3 and 4-6 (versions 7, 8), text from CWE-9
    or the first display. With ``code_map`` the site's mapping of a local code is put first,
    the local coding kept beside it. None when the field is empty."""
    if not comp.raw:
        return None
    memo = site_memo(site)
    enc = comp.enc
    key = ("CWE", comp.raw, enc.component, enc.subcomponent, enc.escape, code_map)
    cc = memo.get(key, _MISSING)
    if cc is _MISSING:
        cc = memo[key] = _cwe(comp, site, code_map)
    if cc is None:
        return None
    out: JSON = {"coding": [dict(c) for c in cc["coding"]]} if "coding" in cc else {}
    if "text" in cc:
        out["text"] = cc["text"]
    return out


def _cwe(comp: Composite, site: Site, code_map: bool) -> JSON | None:
    codings: list[JSON] = []
    texts = []
    for code_i, text_i, name_i, version_i in ((1, 2, 3, 7), (4, 5, 6, 8)):
        code, display = comp.c(code_i).strip(), fhir_string(comp.c(text_i)).strip()
        name = comp.c(name_i).strip()
        if display:
            texts.append(display)
        if not code:
            continue
        coding = _coding(code, display, name, comp.c(version_i).strip(), site)
        mapped = _mapped(coding, name, site) if code_map and not is_standard(
            coding["system"]) else None
        codings.extend([mapped, coding] if mapped else [coding])
    text = fhir_string(comp.c(9)).strip() or (texts[0] if texts else "")
    if not codings and not text:
        return None
    cc: JSON = {"coding": _unique(codings)} if codings else {}
    if text:
        cc["text"] = text
    return cc


def _unique(codings: list[JSON]) -> list[JSON]:
    seen: set[tuple[str, str]] = set()
    out = []
    for c in codings:
        key = (c["system"], c["code"])
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def has_standard_coding(cc: JSON | None) -> bool:
    return cc is not None and any(is_standard(c["system"]) for c in cc.get("coding", ()))


def table_coding(code: str, table: str, display: str = "") -> JSON:
    """A coding in an HL7 v2 table (http://terminology.hl7.org/CodeSystem/v2-nnnn)."""
    out: JSON = {"system": t.V2_SYSTEM.format(table=table), "code": code}
    if display:
        out["display"] = display
    return out


# --- dates and times ---------------------------------------------------------------------
@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _offset(tz: str) -> str:
    return f"{tz[:3]}:{tz[3:]}"


Parts = tuple[int, int, int, int, int, int]


def _site_offset(parts: Parts, tz: str) -> str:
    year, month, day, hour, minute, second = parts
    # fold=0: the first of an ambiguous hour; a time in the spring gap gets the winter offset
    local = datetime(year, month, day, hour, minute, second, tzinfo=_zone(tz))
    delta = local.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def dtm_to_fhir(value: str, tz: str, at: Location) -> str:
    """DTM/DT/TS (TS: component 1) → FHIR date or dateTime, precision kept exactly.

    YYYY, YYYYMM, YYYYMMDD → date (a zone on a date is dropped: FHIR dates have none);
    with hours → dateTime with seconds (HH → HH:00:00, HHMM → HH:MM:00), fractional
    seconds kept; the offset kept when present, else the site's zone (DST-correct)."""
    out = dtm_or_reason(value, tz)
    if out.startswith("!"):
        raise fail(out[1:], at)
    return out


def dtm_or_reason(value: str, tz: str) -> str:
    """``dtm_to_fhir`` without raising: the FHIR value, or "!reason" when invalid."""
    return _dtm(value.strip(), tz)


@lru_cache(maxsize=4096)
def _dtm(value: str, tz: str) -> str:
    """The conversion, cached (timestamps repeat within and across messages); an error is
    returned as "!reason" so that the location can be added by the caller."""
    m = _DTM.match(value)
    if not m:
        return "!not a valid DTM"
    year, month, day, hour, minute, second, frac, offset = m.groups()
    if frac and not second:
        return "!fractional seconds without seconds in DTM"
    try:
        parts: Parts = (int(year), int(month or 1), int(day or 1), int(hour or 0),
                        int(minute or 0), int(second or 0))
        datetime(*parts)  # noqa: DTZ001 - validates the calendar only
    except ValueError:
        return "!DTM is not a calendar date/time"
    date = "-".join(p for p in (year, month, day) if p)
    if hour is None:
        return date
    if day is None:
        return "!DTM has a time but no day"
    zone = _offset(offset) if offset else _site_offset(parts, tz)
    return f"{date}T{hour}:{minute or '00'}:{second or '00'}{frac or ''}{zone}"


def ts_to_fhir(comp: Composite, tz: str, at: Location) -> str | None:
    """TS (component 1 is the DTM) or a plain DTM field; None when empty."""
    value = comp.c(1)
    return dtm_to_fhir(value, tz, at) if value else None


def tm_to_fhir(value: str, at: Location) -> str:
    """TM → FHIR time (hh:mm:ss[.fff]); FHIR time has no zone, so an offset is dropped."""
    m = _TM.match(value.strip())
    if not m:
        raise fail("not a valid TM", at)
    hour, minute, second, frac, _offset_unused = m.groups()
    if int(hour) > 23 or int(minute or 0) > 59 or int(second or 0) > 59:
        raise fail("TM out of range", at)
    return f"{hour}:{minute or '00'}:{second or '00'}{frac or ''}"


# --- numbers and quantities --------------------------------------------------------------
def nm_to_decimal(value: str, at: Location) -> int | float:
    """NM → JSON number (int without a decimal point, else float; see module docstring)."""
    text = value.strip()
    if not NM_PATTERN.match(text):
        raise fail("not a valid NM: send digits with a point for decimals (12.5), a "
                   "comparator (<0.5), or declare OBX-2 SN or ST", at)
    if "." in text:
        return float(text)
    return int(text)


def split_comparator(value: str) -> tuple[str | None, str]:
    """``<0.5`` in an NM field is a result below the limit of detection, not an error:
    (FHIR quantity-comparator, number text)."""
    text = value.strip()
    for comparator in ("<=", ">=", "<", ">"):
        if text.startswith(comparator):
            return comparator, text[len(comparator):].strip()
    return None, text


def units(comp: Composite, site: Site) -> JSON:
    """OBX-6 (CWE) → Quantity unit/system/code. UCUM when the site's unit_map says so, when
    the coding system is UCUM, or when the unit is a common UCUM lab unit (or its usual
    spelling); otherwise only the human-readable ``unit``."""
    if not comp.raw:
        return {}
    memo = site_memo(site)
    enc = comp.enc
    key = ("units", comp.raw, enc.component, enc.subcomponent, enc.escape)
    out = memo.get(key)
    if out is None:
        out = memo[key] = _units(comp, site)
    return dict(out)


def _units(comp: Composite, site: Site) -> JSON:
    code, text, name = comp.c(1).strip(), comp.c(2).strip(), comp.c(3).strip()
    if not code and not text:
        return {}
    mapped = site.unit_map.get(code) or site.unit_map.get(text)
    if mapped:
        return {"unit": mapped.display or text or code, "system": t.UCUM, "code": mapped.code}
    if name.upper() in ("UCUM", "ANS+") and code:
        return {"unit": text or code, "system": t.UCUM, "code": code}
    ucum = _as_ucum(code) or _as_ucum(text)
    if ucum:
        return {"unit": text or code, "system": t.UCUM, "code": ucum}
    return {"unit": text or code}


def _as_ucum(unit: str) -> str | None:
    if unit in t.UCUM_UNITS:
        return unit
    return t.UNIT_ALIASES.get(unit)


def quantity(value: int | float, unit: JSON, comparator: str | None = None) -> JSON:
    out: JSON = {"value": value}
    if comparator:
        out["comparator"] = comparator
    out.update(unit)
    return out


def cq_to_quantity(comp: Composite, site: Site, at: Location) -> JSON | None:
    """CQ (quantity ^ units CWE) → Quantity; units in sub-components of component 2."""
    if not comp.c(1):
        return None
    unit_parts = comp.subs(2)
    unit = units(Composite("^".join(unit_parts), comp.enc), site) if unit_parts else {}
    return quantity(nm_to_decimal(comp.c(1), at), unit)


def sn_to_value(comp: Composite, unit: JSON, at: Location) -> tuple[str, Any]:
    """SN → (value[x] name, value): comparator + number → Quantity (``=`` and empty: none;
    ``<>`` has no FHIR comparator → String); num1 ``-`` num2 → Range; ``:`` or ``/`` →
    Ratio; a ``+`` suffix or ``.`` separator, or anything else → String of the SN text."""
    comparator, num1, sep, num2 = comp.c(1), comp.c(2), comp.c(3), comp.c(4)
    if sep in ("-", ":", "/") and num1 and num2:
        low, high = nm_to_decimal(num1, at), nm_to_decimal(num2, at)
        if sep == "-" and comparator in ("", "=", '"', "-"):  # "-": see SN_NOT_COMPARATOR
            return "valueRange", {"low": quantity(low, unit), "high": quantity(high, unit)}
        if sep in (":", "/") and comparator in ("", "=", '"'):
            return "valueRatio", {"numerator": quantity(low, {}),
                                  "denominator": quantity(high, {})}
    if num1 and not sep and not num2 and comparator in SN_COMPARATORS:
        return "valueQuantity", quantity(nm_to_decimal(num1, at), unit,
                                         SN_COMPARATORS[comparator])
    text = "".join((comparator, num1, sep, num2))
    if not text:
        raise fail("empty SN", at)
    return "valueString", text


def nr_to_range(comp: Composite, unit: JSON, at: Location) -> JSON:
    """NR (low ^ high) → Range."""
    out: JSON = {}
    if comp.c(1):
        out["low"] = quantity(nm_to_decimal(comp.c(1), at), unit)
    if comp.c(2):
        out["high"] = quantity(nm_to_decimal(comp.c(2), at), unit)
    return out


# --- identifiers -------------------------------------------------------------------------
def hd_to_system(namespace: str, universal: str, universal_type: str, site_id: str) -> str:
    """HD → a system URI: ISO OID → urn:oid:, UUID → urn:uuid:, URI as is; a bare namespace
    → a site-scoped URN (namespaces are only unique within a sender)."""
    kind = universal_type.upper()
    if universal and kind == "ISO":
        return f"urn:oid:{universal}"
    if universal and kind in ("UUID", "GUID"):
        return f"urn:uuid:{universal.lower()}"
    if universal and kind in ("URI", "URL") and not any(c.isspace() for c in universal):
        return universal
    name = quote(namespace or universal or "none", safe="")
    return f"urn:plagencell:site:{site_id}:ns:{name}"


def ei_system(comp: Composite, site_id: str) -> str:
    """The system of an EI (2 namespace, 3 universal id, 4 universal id type)."""
    return hd_to_system(comp.c(2), comp.c(3), comp.c(4), site_id)


def hashed_identifier(kind: str, system: str, value: str, pseudonym: Any,
                      type_code: str | None = None) -> JSON:
    """An identifier whose value is the keyed HMAC of (kind, system, value): order, visit and
    specimen numbers never leave the edge in clear."""
    out: JSON = {"system": t.HASHED_SYSTEM.format(kind=kind),
                 "value": pseudonym(kind, system, value)}
    if type_code:
        out["type"] = {"coding": [table_coding(type_code, "0203")]}
    return out


def ei_to_identifier(comp: Composite, site_id: str, pseudonym: Any, kind: str,
                     type_code: str | None = None) -> JSON | None:
    """EI → hashed Identifier (see ``hashed_identifier``); None when EI-1 is empty."""
    value = comp.c(1)
    if not value:
        return None
    return hashed_identifier(kind, ei_system(comp, site_id), value, pseudonym, type_code)


def cx_to_identifier(comp: Composite, site_id: str, pseudonym: Any | None = None) -> JSON | None:
    """CX → Identifier: CX-1 value, CX-4 assigning authority (HD) → system, CX-5 type (0203).
    With ``pseudonym`` the value is hashed (kind = the CX-5 type, or "id")."""
    value = comp.c(1)
    if not value:
        return None
    system = hd_to_system(comp.c(4, 1), comp.c(4, 2), comp.c(4, 3), site_id)
    type_code = comp.c(5)
    if pseudonym is not None:
        return hashed_identifier((type_code or "id").lower(), system, value, pseudonym,
                                 type_code or None)
    out: JSON = {"system": system, "value": value}
    if type_code:
        out["type"] = {"coding": [table_coding(type_code, "0203")]}
    return out

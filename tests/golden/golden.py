"""Golden comparison of our Observations/Specimens with the corpus' expected FHIR outputs.

Used by ``tests/mapping/test_golden.py`` and by ``make_misses.py`` (which writes MISSES.md),
so the test and the list of misses always agree.

What is compared (our output drops identifying data, so only these fields):
- Observation: code, value, unit, status, effective.
- Specimen: type, collection time (collectedDateTime, or collectedPeriod.start).
Normalisation: codings match by system+code when the expected system is a standard one
(LOINC, SNOMED, UCUM, terminology.hl7.org, …), by code alone when it is a converter's own
local-system URL; dateTimes with a time compare as instants, dates as text; decimals as
numbers; units by UCUM code when both sides carry UCUM, else by unit text (case-insensitive).
An expected Specimen with neither type nor collection time has nothing to compare and is
not counted (ReportStream creates one empty Specimen per OBR). An expected status
``unknown`` (the converter had no mapping for that OBX-11 code; FHIR-Converter says
``unknown`` for S, I, O where the IG ConceptMap says preliminary / registered) is not
compared: it carries no information to disagree with.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.adapters.site import Privacy, Site
from gateway.errors import GatewayError, UnsupportedMessage
from gateway.hl7.parser import parse
from gateway.mapping import map_message
from gateway.mapping.adt import map_patient_facts
from gateway.mapping.context import MappingContext
from gateway.mapping.datatypes import is_standard
from gateway.mapping.results import map_results

JSON = dict[str, Any]
SOURCES = ("fhir-converter", "reportstream", "hl7-v2-to-fhir-ig")
KEY = b"golden-test-pseudonym-key-000000"
# free_text keep: the corpus values are compared, so the test site keeps them raw.
# timezone UTC: the converters write times that had no offset as UTC (or without offset, which
# the comparison reads as UTC); a Europe/Rome site would shift them by one or two hours.
SITE = Site(id="golden", name="Golden test site", kind="hospital", facilities=["GOLDEN"],
            timezone="UTC", privacy=Privacy(free_text="keep",
                                            free_text_reason="golden: corpus values compared"))
RESULT_TYPES = ("Observation", "Specimen")
RECEIVED = "2026-01-01T00:00:00Z"


@dataclass
class Expected:
    pair: str  # input path relative to the corpus
    index: int  # position among the expected resources of that type in the bundle
    resource: JSON

    @property
    def kind(self) -> str:
        return str(self.resource["resourceType"])


@dataclass
class Outcome:
    expected: Expected
    matched: bool
    reason: str = ""


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (pair, why not counted)
    emitted: dict[str, list[JSON]] = field(default_factory=dict)  # pair → our resources

    @property
    def rate(self) -> float:
        return sum(o.matched for o in self.outcomes) / max(1, len(self.outcomes))


def pairs(corpus: Path) -> list[tuple[str, str]]:
    rows = csv.DictReader((corpus / "PAIRS.tsv").open(encoding="utf-8"), delimiter="\t")
    out = []
    for row in rows:
        if row["source"] not in SOURCES or not row["expected_fhir"]:
            continue
        path = corpus / row["expected_fhir"]
        if path.is_file() and _expected(path):
            out.append((row["input_hl7"], row["expected_fhir"]))
    return out


def _expected(path: Path) -> list[JSON]:
    try:
        bundle = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return []  # e.g. the IG's MDM_T02 "json" that is XML
    return [e["resource"] for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") in RESULT_TYPES]


def convert(data: bytes) -> list[JSON]:
    """Our mapping of one message: ``map_message`` (the product's entry point; PID optional,
    as in a corpus without usable patient identifiers). Message types the manifest refuses
    at ingest (ADT^A14, MDM, ORM, REF, VXU, …: AR 200/201) are mapped with ``map_results``
    and ``map_patient_facts`` (PDA, ACC) directly, so that the results mapping is measured
    over every corpus message."""
    msg = parse(data)
    try:
        result = map_message(msg, SITE, pseudonym_key=KEY, received=RECEIVED,
                             require_patient=False)
    except UnsupportedMessage:
        ctx = MappingContext(site=SITE, message=msg, pseudonym_key=KEY, received=RECEIVED)
        map_results(ctx, None)
        map_patient_facts(ctx, None)
        return list(ctx.resources.values())
    return result.resources


def run(corpus: Path) -> Run:
    result = Run()
    for input_hl7, expected_fhir in pairs(corpus):
        expected = _expected(corpus / expected_fhir)
        counted = [Expected(input_hl7, i, r) for i, r in enumerate(expected) if _comparable(r)]
        empties = len(expected) - len(counted)
        if empties:
            result.skipped.append((input_hl7, f"{empties} expected Specimen(s) with neither "
                                               "type nor collection time"))
        try:
            ours = convert((corpus / input_hl7).read_bytes())
        except GatewayError as exc:
            result.outcomes += [Outcome(e, False, f"message rejected: {exc}") for e in counted]
            continue
        result.emitted[input_hl7] = ours
        for e in counted:
            result.outcomes.append(match(e, ours))
    return result


def _comparable(resource: JSON) -> bool:
    if resource["resourceType"] == "Observation":
        return True
    return bool(resource.get("type")) or bool(collected(resource))


# --- comparison ------------------------------------------------------------------------
def match(expected: Expected, ours: list[JSON]) -> Outcome:
    candidates = [r for r in ours if r["resourceType"] == expected.kind]
    check = _observation_diff if expected.kind == "Observation" else _specimen_diff
    reasons = []
    for candidate in candidates:
        diff = check(expected.resource, candidate)
        if diff is None:
            return Outcome(expected, True)
        reasons.append(diff)
    if not candidates:
        return Outcome(expected, False, f"no {expected.kind} emitted")
    # The most telling reason: the one from a candidate whose code/type matched, if any.
    close = [r for r in reasons if not r.startswith(("code", "type"))]
    return Outcome(expected, False, (close or reasons)[0])


def _observation_diff(exp: JSON, ours: JSON) -> str | None:
    if not concept_match(exp.get("code"), ours.get("code")):
        return f"code {_codes(exp.get('code'))} not found"
    if exp.get("status") not in (None, "unknown") and exp["status"] != ours.get("status"):
        return f"status {exp['status']} expected, ours {ours.get('status')}"
    diff = value_diff(exp, ours)
    if diff:
        return diff
    exp_time, our_time = effective(exp), effective(ours)
    if exp_time and not same_time(exp_time, our_time):
        return f"effective {exp_time} expected, ours {our_time}"
    return None


def _specimen_diff(exp: JSON, ours: JSON) -> str | None:
    if exp.get("type") and not concept_match(exp["type"], ours.get("type")):
        return f"type {_codes(exp['type'])} not found"
    exp_time, our_time = collected(exp), collected(ours)
    if exp_time and not same_time(exp_time, our_time):
        return f"collection time {exp_time} expected, ours {our_time}"
    return None


def _codes(cc: JSON | None) -> str:
    if not cc:
        return "(none)"
    codes = [f"{c.get('system', '')}|{c.get('code', '')}" for c in cc.get("coding", [])]
    return ",".join(codes) or repr(cc.get("text", ""))


def coding_keys(cc: JSON | None) -> set[tuple[str, str]]:
    out = set()
    for c in (cc or {}).get("coding", []):
        if c.get("code"):
            system = c.get("system", "")
            out.add((system if is_standard(system) else "*", str(c["code"])))
    return out


def concept_match(exp: JSON | None, ours: JSON | None) -> bool:
    if not exp:
        return True
    if not ours:
        return False
    want = coding_keys(exp)
    if want:
        have = coding_keys(ours)
        have |= {("*", code) for _, code in have}  # a local expectation accepts any system
        return bool(want & have)
    return (exp.get("text") or "").strip() == (ours.get("text") or "").strip()


VALUE_KEYS = ("valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean",
              "valueInteger", "valueRange", "valueRatio", "valueSampledData", "valueTime",
              "valueDateTime", "valuePeriod")


def value_of(resource: JSON) -> tuple[str, Any] | None:
    for key in VALUE_KEYS:
        if key in resource:
            return key, resource[key]
    return None


def value_diff(exp: JSON, ours: JSON) -> str | None:
    want, have = value_of(exp), value_of(ours)
    if want is None:
        return None
    if have is None:
        return f"{want[0]} expected, ours has no value"
    if want[0] != have[0]:
        return f"{want[0]} expected, ours {have[0]}"
    same = {
        "valueQuantity": same_quantity,
        "valueCodeableConcept": concept_match,
        "valueRange": lambda a, b: all(same_quantity(a.get(k), b.get(k)) for k in
                                       ("low", "high") if a.get(k)),
        "valueRatio": lambda a, b: all(same_number(a.get(k), b.get(k)) for k in
                                       ("numerator", "denominator") if a.get(k)),
        "valueDateTime": same_time,
        "valuePeriod": lambda a, b: all(same_time(a.get(k), (b or {}).get(k)) for k in
                                        ("start", "end") if a.get(k)),
    }.get(want[0], lambda a, b: str(a).strip() == str(b).strip())
    if not same(want[1], have[1]):
        return f"{want[0]} differs: expected {_short(want[1])}, ours {_short(have[1])}"
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) < 160 else text[:157] + "..."


def same_number(a: JSON | None, b: JSON | None) -> bool:
    if not a or "value" not in a:
        return True
    return bool(b) and float(a["value"]) == float(b.get("value", "nan"))


def same_quantity(a: JSON | None, b: JSON | None) -> bool:
    if not same_number(a, b) or a is None or b is None:
        return a is None
    if a.get("comparator") != b.get("comparator"):
        return False
    ucum = "http://unitsofmeasure.org"
    if a.get("system") == ucum and b.get("system") == ucum:
        return a.get("code") == b.get("code")
    want = (a.get("unit") or a.get("code") or "").lower()
    return not want or want in {(b.get("unit") or "").lower(), (b.get("code") or "").lower()}


def effective(resource: JSON) -> str | None:
    return resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get(
        "start") or resource.get("effectiveInstant")


def collected(resource: JSON) -> str | None:
    coll = resource.get("collection") or {}
    return coll.get("collectedDateTime") or (coll.get("collectedPeriod") or {}).get("start")


def same_time(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    if "T" not in a or "T" not in b:
        return a == b
    return _instant(a) == _instant(b)


def _instant(value: str) -> datetime:
    text = value.replace("Z", "+00:00")
    if len(text) >= 6 and text[-6] in "+-" and text[-3] == ":":
        return datetime.fromisoformat(text)
    return datetime.fromisoformat(text + "+00:00")  # no zone: read as UTC (as the site)

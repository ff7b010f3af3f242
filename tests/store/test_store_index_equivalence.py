"""The compiled index extraction gives exactly the rows of the plain walk it replaced
(``frozen_index``): same tables, in the same order, same rows, same order of rows; a resource
that made the walk raise makes it raise the same way.

Compared over every resource the mapping makes of the shared corpus and of the site
samples, every resource of the corpus' expected FHIR bundles (other converters' shapes:
names, addresses, telecoms, periods), hand-written malformed elements, and random resources
built from the element names the search parameters read.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters.loader import load_network
from gateway.errors import GatewayError
from gateway.hl7.parser import parse, split_messages
from gateway.mapping import map_message
from gateway.store.search.index import index_rows
from gateway.store.search.params import REGISTRY, STUDY_EXTENSION
from tests.conftest import CORPUS
from tests.golden import golden
from tests.store import frozen_index

Resource = dict[str, Any]
SAMPLES = Path(__file__).resolve().parents[2] / "gateway" / "sites" / "samples"
KEY = b"index-equivalence-key-0123456789"
RECEIVED = "2026-11-27T10:00:00+01:00"


def outcome(extract: Any, resource: Resource) -> Any:
    try:
        rows = extract(resource)
    except Exception as exc:  # noqa: BLE001 - the exception type is the outcome compared
        return ("raised", type(exc))
    return [(kind, [list(row.items()) for row in kind_rows]) for kind, kind_rows in rows.items()]


def assert_same(resources: list[Resource]) -> None:
    for resource in resources:
        assert outcome(index_rows, resource) == outcome(frozen_index.index_rows, resource), (
            f"{resource.get('resourceType')}/{resource.get('id')}")


def with_meta(resource: Resource, n: int) -> Resource:
    """As stored: meta with versionId, lastUpdated, source (the common parameters)."""
    meta = {**(resource.get("meta") or {}), "versionId": str(n % 7 + 1),
            "lastUpdated": f"2026-11-27T10:{n % 60:02d}:00.{n % 1000:03d}Z",
            "source": "urn:plagencell:node:test"}
    return {**resource, "meta": meta}


@cache
def mapped_corpus() -> tuple[Resource, ...]:
    out: list[Resource] = []
    for path in sorted(CORPUS.rglob("*.hl7")):
        for text in split_messages(path.read_bytes()):
            try:
                out.extend(golden.convert(text.encode("utf-8", "surrogateescape")))
            except (GatewayError, ValueError, UnicodeError):
                continue  # a message the mapping refuses has no resources to index
    return tuple(with_meta(r, n) for n, r in enumerate(out))


def mapped_samples() -> list[Resource]:
    network = load_network()
    out: list[Resource] = []
    for path in sorted(SAMPLES.rglob("*.hl7")):
        message = parse(path.read_bytes())
        site = network.sites.get(path.parent.name) or network.site_for(
            message.sending_facility)
        assert site is not None, path
        out.extend(map_message(message, site, pseudonym_key=KEY, received=RECEIVED,
                               studies=network.studies).resources)
    return [with_meta(r, n) for n, r in enumerate(out)]


def expected_bundles() -> list[Resource]:
    out: list[Resource] = []
    for path in sorted([*CORPUS.rglob("*.json"), *CORPUS.rglob("*.fhir")]):
        try:
            bundle = json.loads(path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            continue  # e.g. the IG's "json" that is XML
        if isinstance(bundle, dict):
            out.extend(e["resource"] for e in bundle.get("entry", [])
                       if isinstance(e.get("resource"), dict))
    return out


def test_the_mapped_corpus_is_indexed_exactly_as_before() -> None:
    resources = list(mapped_corpus())
    assert len(resources) > 1000
    assert {r["resourceType"] for r in resources} >= {"Observation", "Specimen", "Patient"}
    assert_same(resources)


def test_the_site_samples_are_indexed_exactly_as_before() -> None:
    resources = mapped_samples()
    # Group: derived by the hub store (study cohorts), never mapped
    assert {r["resourceType"] for r in resources} >= set(REGISTRY) - {"Organization", "Group"}
    assert_same(resources)


def test_other_converters_resources_are_indexed_exactly_as_before() -> None:
    resources = expected_bundles()
    assert sum(r.get("resourceType") == "Patient" for r in resources) > 50
    assert_same(resources)


MALFORMED: list[Resource] = [
    {"resourceType": "Observation", "id": "o1", "code": {"coding": [
        {"system": "http://loinc.org", "code": "1-8", "display": "A"}, "not-a-coding",
        {"code": "2-6", "display": 5}]}, "valueQuantity": {"value": True, "unit": "x"},
     "effectiveDateTime": "2024-13-01", "component": [
         {"code": {"coding": [{"code": "c1"}, {"code": "c1"}]},
          "valueCodeableConcept": {"coding": [{"code": "v"}, 7], "text": 3}},
         {"code": {"coding": [{"code": "c2"}]}, "valueQuantity": {"value": float("inf")}},
         "not-a-component"],
     "subject": {"reference": "Patient/p/_history/2", "type": {"x": 1}},
     "specimen": [{"reference": "#contained"}, {"reference": "urn:uuid:1"}],
     "focus": [{"reference": "http://x.org/fhir/Specimen/s1"}, {"reference": "a/b/c"}],
     "category": [[{"coding": [{"code": "nested"}]}], None, {"text": "Lab ÉLITE"}],
     "valueString": "Très élevé", "valuePeriod": {"start": "2024", "end": 5}},
    {"resourceType": "Observation", "id": "o2", "code": {"coding": {"code": "dict"}},
     "valueCodeableConcept": {"text": "only text"}, "effectivePeriod": {"end": "2024-02"},
     "valueDateTime": "2024-02-29T10:00:00+01:00", "identifier": [{"value": 12},
                                                                   {"value": None}],
     "extension": [{"url": STUDY_EXTENSION, "valueReference": {"reference": "ResearchStudy/s"}},
                   {"url": STUDY_EXTENSION, "valueReference": "ResearchStudy/t"},
                   {"url": "http://other", "valueReference": {"reference": "X/y"}}]},
    {"resourceType": "Patient", "id": "p", "active": True, "deceasedBoolean": False,
     "name": [{"family": "Rossi", "given": ["Anna", None, 3, ""]}, {"text": "Ann"}, "x"],
     "address": [{"line": "Via Roma", "city": ["Milano"], "postalCode": 20121}],
     "telecom": [{"system": "email", "value": "a@b.it"}, {"system": "phone"}],
     "birthDate": " 2000-01-01 ", "deceasedDateTime": "bad", "gender": ["female", "male"],
     "communication": [{"language": {"coding": [{"code": "it"}]}}, {"language": None}]},
    {"resourceType": "Specimen", "id": "s", "collection": [{"collectedPeriod": {}},
                                                           {"collectedDateTime": "2024"}],
     "container": {"identifier": [{"system": "s", "value": "v"}], "type": {"text": "Tube"}},
     "type": {"coding": [{"system": "x", "code": "a"}, {"system": "x", "code": "a"}]}},
    {"resourceType": "ResearchStudy", "id": "r", "period": {"start": "2024-01"},
     "title": "Studio CAR-T", "keyword": [{"text": ""}], "condition": [{"coding": []}]},
    {"resourceType": "Provenance", "id": "v", "target": [{"reference": "Observation/o"}] * 3,
     "recorded": "2024-01-01T10:00:00.12345Z", "occurredPeriod": {"start": "2024-01-01"},
     "agent": [{"who": {"reference": "Organization/x"}, "role": [{"text": "r"}]}]},
    {"resourceType": "Observation", "id": "unhashable",
     "code": {"coding": [{"system": "x", "code": {"nested": 1}}]}},
    {"resourceType": "Unknown", "id": "u", "status": "final"},
    {"resourceType": "Observation", "id": "empty"},
]


@pytest.mark.parametrize("resource", MALFORMED, ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_malformed_elements_are_skipped_or_raise_exactly_as_before(resource: Resource) -> None:
    assert_same([resource])


def _names() -> list[str]:
    names = {step for params in REGISTRY.values() for d in params.values()
             for path in d.paths for step in path.split(".")}
    return sorted(names | {"coding", "system", "code", "display", "text", "value", "start",
                           "end", "reference", "type", "url", "valueReference", "family",
                           "given", "line", "city", "unit", "component", "valuePeriod"})


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False),
                    st.sampled_from(["2024", "2024-02-29T10:00:00Z", "Patient/p", "final",
                                     "http://loinc.org", "Ärger", "", "urn:uuid:x",
                                     STUDY_EXTENSION, "2024-02-30"]))
ELEMENTS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(_names()), inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rtype=st.sampled_from(sorted(REGISTRY)),
       body=st.dictionaries(st.sampled_from(_names()), ELEMENTS, max_size=8))
def test_random_resources_are_indexed_exactly_as_before(rtype: str, body: Resource) -> None:
    assert_same([{**body, "resourceType": rtype, "id": "x"}])

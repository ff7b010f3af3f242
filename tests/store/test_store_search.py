"""Search on both databases: every parameter type and modifier, chains, _has, composites.

Expected results are worked out from the R4 search rules (comments say which), not from
the implementation's output.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import SearchError
from gateway.store.sql import SqlStore

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
STUDY_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"


def obs(oid: str, code: str, subject: str, when: str, value: float | None = None,
        **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}], "text": f"test {code}"},
        "subject": {"reference": subject}, "effectiveDateTime": when, **extra}
    if value is not None:
        out["valueQuantity"] = {"value": value, "unit": "g/dL", "system": UCUM, "code": "g/dL"}
    return out


DATA: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org1", "name": "Ospedale Niguarda"},
    {"resourceType": "Patient", "id": "p1", "active": True, "gender": "female",
     "managingOrganization": {"reference": "Organization/org1"},
     "identifier": [{"system": "urn:pseudo", "value": "PS-1"}],
     "name": [{"family": "Ferrè", "given": ["Élodie"]}], "birthDate": "1970-05"},
    {"resourceType": "Patient", "id": "p2", "active": False, "gender": "male",
     "identifier": [{"system": "urn:pseudo", "value": "PS-2"}],
     "name": [{"family": "Ferraro", "given": ["Luca"]}], "birthDate": "1985-11-30"},
    {"resourceType": "ResearchStudy", "id": "s1", "status": "active",
     "title": "CAR-T in DLBCL",
     "identifier": [{"system": "https://clinicaltrials.gov/nctid", "value": "NCT001"}],
     "period": {"start": "2023-01-01", "end": "2023-12-31"}},
    {"resourceType": "ResearchStudy", "id": "s2", "status": "completed", "title": "MSC in GvHD",
     "identifier": [{"system": "https://clinicaltrials.gov/nctid", "value": "NCT002"}],
     "period": {"start": "2023-06"}},
    {"resourceType": "ResearchSubject", "id": "rs1", "status": "on-study",
     "study": {"reference": "ResearchStudy/s1"}, "individual": {"reference": "Patient/p1"}},
    {"resourceType": "ResearchSubject", "id": "rs2", "status": "on-study",
     "study": {"reference": "ResearchStudy/s2"}, "individual": {"reference": "Patient/p2"}},
    # o1: 2024-03-01T23:30-02:00 is 2024-03-02T01:30Z: it falls on 2 March in UTC
    obs("o1", "718-7", "Patient/p1", "2024-03-01T23:30:00-02:00", 5.4,
        extension=[{"url": STUDY_EXT, "valueReference": {"reference": "ResearchStudy/s1"}}],
        meta={"tag": [{"system": "urn:tag", "code": "batch-7"}], "source": "urn:site:a",
              "profile": ["http://example.org/StructureDefinition/lab"]}),
    obs("o2", "718-7", "Patient/p2", "2024-03-05T10:00:00Z", 12.0),
    obs("o3", "2345-7", "Patient/p1", "2024-04-10T08:00:00+02:00", 95.0),
    obs("o4", "2345-7", "Patient/p2", "2023-12-31T23:00:00-01:00", 5.45),  # 2024-01-01T00Z
    {"resourceType": "Observation", "id": "o5", "status": "preliminary",
     "code": {"coding": [{"code": "LOCAL-1"}], "text": "Emoglobina"},
     "subject": {"reference": "http://other.example/fhir/Patient/x9"},
     "valueString": "Positivo"},
]


@pytest.fixture
def loaded(store: SqlStore) -> SqlStore:
    with store.transaction() as tx:
        for resource in DATA:
            tx.put(resource)
    return store


def ids(store: SqlStore, rtype: str, *params: tuple[str, str], **options: Any) -> list[str]:
    return sorted(r["id"] for r in store.search(rtype, list(params), **options).resources)


def test_token_forms_match_system_and_code_as_the_spec_says(loaded: SqlStore) -> None:
    assert ids(loaded, "Observation", ("code", f"{LOINC}|718-7")) == ["o1", "o2"]
    assert ids(loaded, "Observation", ("code", "718-7")) == ["o1", "o2"]
    assert ids(loaded, "Observation", ("code", "|LOCAL-1")) == ["o5"]  # no system
    assert ids(loaded, "Observation", ("code", "|718-7")) == []  # 718-7 has a system
    assert ids(loaded, "Observation", ("code", f"{LOINC}|")) == ["o1", "o2", "o3", "o4"]
    assert ids(loaded, "Observation", ("code", "718-7,2345-7")) == ["o1", "o2", "o3", "o4"]
    assert ids(loaded, "Observation", ("status", "preliminary")) == ["o5"]
    assert ids(loaded, "Patient", ("identifier", "urn:pseudo|PS-2")) == ["p2"]
    assert ids(loaded, "Patient", ("active", "true")) == ["p1"]
    assert ids(loaded, "Patient", ("gender", "male")) == ["p2"]


def test_token_modifiers_not_text_and_missing(loaded: SqlStore) -> None:
    # :not keeps resources without a matching code, including ones with another code
    assert ids(loaded, "Observation", ("code:not", "718-7")) == ["o3", "o4", "o5"]
    assert ids(loaded, "Observation", ("code:text", "emoglo")) == ["o5"]
    assert ids(loaded, "Observation", ("value-quantity:missing", "true")) == ["o5"]
    assert ids(loaded, "Observation", ("value-string:missing", "false")) == ["o5"]
    assert ids(loaded, "Observation", ("_id:not", "o1,o2,o3")) == ["o4", "o5"]
    assert ids(loaded, "Observation", ("_id", "o2,o9")) == ["o2"]


def test_string_search_is_prefix_case_and_accent_insensitive(loaded: SqlStore) -> None:
    assert ids(loaded, "Patient", ("family", "ferr")) == ["p1", "p2"]
    assert ids(loaded, "Patient", ("family", "FERRE")) == ["p1"]  # Ferrè without accent
    assert ids(loaded, "Patient", ("name", "elodie")) == ["p1"]  # any part of HumanName
    assert ids(loaded, "Patient", ("family:exact", "Ferrè")) == ["p1"]
    assert ids(loaded, "Patient", ("family:exact", "ferrè")) == []
    assert ids(loaded, "Patient", ("family:contains", "RAR")) == ["p2"]
    assert ids(loaded, "Observation", ("value-string", "posi")) == ["o5"]
    assert ids(loaded, "ResearchStudy", ("title", "car-t")) == ["s1"]


def test_date_prefixes_compare_ranges_in_utc(loaded: SqlStore) -> None:
    obs_ids = ["o1", "o2", "o3", "o4"]
    assert ids(loaded, "Observation", ("date", "2024-03-02")) == ["o1"]
    assert ids(loaded, "Observation", ("date", "2024-03-01")) == []
    assert ids(loaded, "Observation", ("date", "2024-03")) == ["o1", "o2"]
    assert ids(loaded, "Observation", ("date", "2024")) == obs_ids  # o4 is 2024-01-01T00Z
    assert ids(loaded, "Observation", ("date", "lt2024-01-01T00:00:00Z")) == []
    assert ids(loaded, "Observation", ("date", "ge2024-03-05T10:00:00Z")) == ["o2", "o3"]
    assert ids(loaded, "Observation", ("date", "gt2024-03-05T10:00:00Z")) == ["o3"]
    assert ids(loaded, "Observation", ("date", "le2024-03-02T01:30:00Z")) == ["o1", "o4"]
    assert ids(loaded, "Observation", ("date", "ne2024-03")) == ["o3", "o4"]
    assert ids(loaded, "Observation", ("date", "sa2024-03-31")) == ["o3"]
    assert ids(loaded, "Observation", ("date", "eb2024-01-02")) == ["o4"]
    # repeated parameters are ANDed: a range
    assert ids(loaded, "Observation", ("date", "ge2024-03"), ("date", "lt2024-04")) == [
        "o1", "o2"]
    # o3 at 08:00+02:00 is 06:00Z: the zone of the search value counts too
    assert ids(loaded, "Observation", ("date", "2024-04-10T06:00:00Z")) == ["o3"]
    assert ids(loaded, "Observation", ("date", "2024-04-10T06:00:00-00:00")) == ["o3"]
    assert ids(loaded, "Observation", ("date", "2024-04-10T08:00:00+02:00")) == ["o3"]
    assert ids(loaded, "Observation", ("date", "2024-04-10T08:00:00Z")) == []


def test_date_search_on_periods_follows_the_range_rules(loaded: SqlStore) -> None:
    # s1 = [2023-01-01, 2024-01-01); s2 = [2023-06-01, open)
    assert ids(loaded, "ResearchStudy", ("date", "2023")) == ["s1"]  # eq: contained
    assert ids(loaded, "ResearchStudy", ("date", "ne2023")) == ["s2"]
    assert ids(loaded, "ResearchStudy", ("date", "ge2024")) == ["s2"]  # extends beyond
    assert ids(loaded, "ResearchStudy", ("date", "lt2023-03")) == ["s1"]  # starts before
    assert ids(loaded, "ResearchStudy", ("date", "sa2022")) == ["s1", "s2"]
    assert ids(loaded, "ResearchStudy", ("date", "eb2024")) == ["s1"]
    assert ids(loaded, "Patient", ("birthdate", "1970")) == ["p1"]
    assert ids(loaded, "Patient", ("birthdate", "1970-05-12")) == []  # month ⊄ day


def test_quantity_search_uses_prefixes_precision_and_units(loaded: SqlStore) -> None:
    # 5.4 means [5.35, 5.45): 5.45 is outside
    assert ids(loaded, "Observation", ("value-quantity", "5.4")) == ["o1"]
    assert ids(loaded, "Observation", ("value-quantity", "5.45")) == ["o4"]
    assert ids(loaded, "Observation", ("value-quantity", "gt10")) == ["o2", "o3"]
    assert ids(loaded, "Observation", ("value-quantity", "le12")) == ["o1", "o2", "o4"]
    assert ids(loaded, "Observation", ("value-quantity", f"lt6|{UCUM}|g/dL")) == ["o1", "o4"]
    assert ids(loaded, "Observation", ("value-quantity", f"lt6|{UCUM}|mg")) == []
    assert ids(loaded, "Observation", ("value-quantity", "lt6||g/dL")) == ["o1", "o4"]
    assert ids(loaded, "Observation", ("value-quantity", "ap100")) == ["o3"]  # ±10 %
    with pytest.raises(SearchError):
        loaded.search("Observation", [("value-quantity", "abc")], strict=True)


def test_reference_forms_type_id_url_and_type_modifier(loaded: SqlStore) -> None:
    assert ids(loaded, "Observation", ("subject", "Patient/p1")) == ["o1", "o3"]
    assert ids(loaded, "Observation", ("subject", "p2")) == ["o2", "o4"]
    assert ids(loaded, "Observation", ("subject:Patient", "p2")) == ["o2", "o4"]
    assert ids(loaded, "Observation", ("patient", "p1,p2")) == ["o1", "o2", "o3", "o4"]
    assert ids(loaded, "Observation", ("subject", "http://gw/fhir/Patient/p1"),
               base_url="http://gw/fhir") == ["o1", "o3"]
    assert ids(loaded, "Observation",
               ("subject", "http://other.example/fhir/Patient/x9"),
               base_url="http://gw/fhir") == ["o5"]
    assert ids(loaded, "ResearchSubject", ("study", "ResearchStudy/s2")) == ["rs2"]
    assert ids(loaded, "Observation", ("research-study", "ResearchStudy/s1")) == ["o1"]


def test_chains_and_reverse_chains(loaded: SqlStore) -> None:
    assert ids(loaded, "Observation", ("subject:Patient.identifier", "urn:pseudo|PS-1")) == [
        "o1", "o3"]
    assert ids(loaded, "Observation", ("patient.family", "ferraro")) == ["o2", "o4"]
    assert ids(loaded, "ResearchSubject", ("study.identifier", "NCT002")) == ["rs2"]
    assert ids(loaded, "Observation", ("subject.organization.name", "ospedale")) == [
        "o1", "o3"]
    assert ids(loaded, "Patient", ("_has:Observation:subject:code", "2345-7")) == ["p1", "p2"]
    assert ids(loaded, "Patient", ("_has:Observation:patient:value-quantity", "gt50")) == ["p1"]
    assert ids(loaded, "ResearchStudy",
               ("_has:ResearchSubject:study:_has:Observation:subject:code", "718-7")) == []
    assert ids(loaded, "Patient", ("_has:ResearchSubject:individual:study", "s1")) == ["p1"]


def test_composite_code_value_quantity_pairs_code_with_its_value(loaded: SqlStore) -> None:
    assert ids(loaded, "Observation", ("code-value-quantity", f"{LOINC}|718-7$gt10")) == ["o2"]
    assert ids(loaded, "Observation", ("code-value-quantity", "2345-7$lt10")) == ["o4"]
    assert ids(loaded, "Observation", ("code-value-quantity", "718-7$gt100")) == []
    assert ids(loaded, "Observation", ("combo-code-value-quantity", "718-7$lt6")) == ["o1"]


def test_common_parameters_tag_source_profile_last_updated(loaded: SqlStore) -> None:
    assert ids(loaded, "Observation", ("_tag", "urn:tag|batch-7")) == ["o1"]
    assert ids(loaded, "Observation", ("_source", "urn:site:a")) == ["o1"]
    assert ids(loaded, "Observation", ("_profile", "http://example.org/StructureDefinition/lab")
               ) == ["o1"]
    assert ids(loaded, "Observation", ("_lastUpdated", "gt2020-01-01")) == [
        "o1", "o2", "o3", "o4", "o5"]
    assert ids(loaded, "Observation", ("_lastUpdated", "lt2020-01-01")) == []
    assert ids(loaded, "Observation", ("_source:below", "urn:site")) == ["o1"]
    assert ids(loaded, "Observation", ("_source:below", "URN:SITE")) == []  # URIs: case counts


def test_updates_and_deletes_are_reflected_in_the_index(loaded: SqlStore) -> None:
    with loaded.transaction() as tx:
        tx.put(obs("o1", "9999-9", "Patient/p1", "2024-03-01T23:30:00-02:00", 5.4))
        tx.delete("Observation", "o2")
    assert ids(loaded, "Observation", ("code", "718-7")) == []
    assert ids(loaded, "Observation", ("code", "9999-9")) == ["o1"]
    assert ids(loaded, "Observation", ("code:not", "9999-9")) == ["o3", "o4", "o5"]
    assert ids(loaded, "Observation", ("_tag", "urn:tag|batch-7")) == []


def test_lenient_mode_ignores_bad_parameters_and_reports_them(loaded: SqlStore) -> None:
    result = loaded.search("Observation", [("code", "718-7"), ("colour", "red"),
                                           ("date", "yesterday"), ("code:below", "7")])
    assert sorted(r["id"] for r in result.resources) == ["o1", "o2"]
    assert result.applied == [("code", "718-7")]
    assert len(result.issues) == 3
    assert {i["severity"] for i in result.issues} == {"warning"}


def test_strict_mode_raises_with_every_issue(loaded: SqlStore) -> None:
    with pytest.raises(SearchError) as info:
        loaded.search("Observation", [("colour", "red"), ("date", "ge20x")], strict=True)
    assert len(info.value.issues) == 2
    assert all(i["severity"] == "error" for i in info.value.issues)
    with pytest.raises(SearchError):
        loaded.search("Encounter", [])
    for bad in ([("family", "a\x00b")], [("value-quantity", "NaN")], [("date", "9999-12")],
                [("_count", "-1")], [("_sort", "code-value-quantity")], [("_include", "X:y")]):
        with pytest.raises(SearchError):
            loaded.search("Observation" if bad[0][0] != "family" else "Patient", bad,
                          strict=True)


def test_total_and_summary_count(loaded: SqlStore) -> None:
    result = loaded.search("Observation", [("code", "718-7,2345-7"), ("_total", "accurate"),
                                           ("_count", "1")])
    assert result.total == 4 and len(result.resources) == 1
    assert loaded.search("Observation", [("code", "718-7")]).total is None
    counted = loaded.search("Observation", [("_summary", "count")])
    assert counted.total == 5 and counted.resources == []
    # o5's subject is a patient this server does not hold: _has must not invent it
    dangling = loaded.search("Patient", [("_has:Observation:subject:status", "preliminary"),
                                         ("_total", "accurate")])
    assert dangling.resources == [] and dangling.total == 0
    has = loaded.search("Patient", [("_has:Observation:subject:code", "718-7,2345-7"),
                                    ("_total", "accurate")])
    assert has.total == 2


def test_specimen_provenance_and_study_parameters(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put({"resourceType": "Specimen", "id": "sp1", "status": "available",
                "accessionIdentifier": {"system": "urn:lab", "value": "ACC-1"},
                "subject": {"reference": "Patient/p1"},
                "collection": {"collectedPeriod": {"start": "2024-05-01T08:00:00Z",
                                                   "end": "2024-05-01T09:00:00Z"}},
                "extension": [{"url": STUDY_EXT,
                               "valueReference": {"reference": "ResearchStudy/s1"}}]})
        tx.put({"resourceType": "Specimen", "id": "sp2", "parent": [
            {"reference": "Specimen/sp1"}], "type": {"text": "Leukapheresis"}})
        tx.put({"resourceType": "Provenance", "id": "pv", "recorded": "2024-05-02T00:00:00Z",
                "target": [{"reference": "Specimen/sp1"}, {"reference": "Patient/p1"}],
                "agent": [{"who": {"reference": "Organization/o1"}}]})
    assert ids(store, "Specimen", ("accession", "urn:lab|ACC-1")) == ["sp1"]
    assert ids(store, "Specimen", ("collected", "2024-05-01")) == ["sp1"]
    assert ids(store, "Specimen", ("collected", "gt2024-05-01T08:30:00Z")) == ["sp1"]
    assert ids(store, "Specimen", ("parent", "sp1")) == ["sp2"]
    assert ids(store, "Specimen", ("patient", "p1")) == ["sp1"]
    assert ids(store, "Specimen", ("type:text", "leuka")) == ["sp2"]
    assert ids(store, "Specimen", ("research-study", "s1")) == ["sp1"]
    assert ids(store, "Provenance", ("target", "Specimen/sp1")) == ["pv"]
    assert ids(store, "Provenance", ("patient", "Patient/p1")) == ["pv"]
    assert ids(store, "Provenance", ("agent", "Organization/o1")) == ["pv"]
    assert ids(store, "Provenance", ("recorded", "le2024-05-02")) == ["pv"]
    assert ids(store, "Specimen", ("_has:Provenance:target:agent", "Organization/o1")) == [
        "sp1"]

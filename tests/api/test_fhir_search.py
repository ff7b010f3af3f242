"""Search end to end over HTTP: each parameter type, chains, _has, _include/_revinclude,
result parameters, paging links, strict and lenient handling, POST _search."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .conftest import FHIR_JSON, Served

STUDY_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
EUCT = "https://euclinicaltrials.eu/clinicalTrialId"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def study_ext() -> list[dict]:
    return [{"url": STUDY_EXT, "valueReference": {"reference": "ResearchStudy/study1"}}]


def obs(id: str, subject: str, code: str, value: float, unit: str, when: str, status: str,
        **extra: object) -> dict:
    return {"resourceType": "Observation", "id": id, "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                      "observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code}], "text": f"lab {code}"},
            "subject": {"reference": f"Patient/{subject}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
            **extra}


DATA = [
    {"resourceType": "Organization", "id": "org1", "name": "Ospedale Niguarda",
     "identifier": [{"system": "urn:test:org", "value": "NIG"}]},
    {"resourceType": "ResearchStudy", "id": "study1", "status": "active",
     "title": "CAR-T CD19 in lymphoma", "sponsor": {"reference": "Organization/org1"},
     "identifier": [{"system": EUCT, "value": "2024-000001-11-00"}]},
    {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-05-01",
     "identifier": [{"system": "urn:test:pseudo", "value": "P1"}]},
    {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1981",
     "identifier": [{"system": "urn:test:pseudo", "value": "P2"}]},
    {"resourceType": "ResearchSubject", "id": "rs1", "status": "on-study",
     "study": {"reference": "ResearchStudy/study1"},
     "individual": {"reference": "Patient/p1"}},
    {"resourceType": "Specimen", "id": "s1", "extension": study_ext(),
     "subject": {"reference": "Patient/p1"},
     "type": {"coding": [{"system": "http://snomed.info/sct", "code": "119297000"}]},
     "accessionIdentifier": {"system": "urn:test:acc", "value": "A-1"},
     "collection": {"collectedDateTime": "2026-01-10T09:00:00+01:00"}},
    obs("o1", "p1", "718-7", 12.1, "g/dL", "2026-01-10T10:00:00+01:00", "final",
        extension=study_ext(), specimen={"reference": "Specimen/s1"},
        meta={"profile": ["http://example.org/StructureDefinition/lab"]}),
    obs("o2", "p1", "6690-2", 7.5, "10*3/uL", "2026-02-01T08:00:00Z", "preliminary"),
    obs("o3", "p2", "718-7", 9.0, "g/dL", "2025-12-15T12:00:00+01:00", "final"),
]


@pytest.fixture(scope="module")
def data(shared_server: Served) -> Served:
    body = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in DATA]}
    answer = httpx.post(shared_server.base, json=body, headers={"Content-Type": FHIR_JSON})
    assert answer.status_code == 200, answer.text
    return shared_server


def ids(client: httpx.Client, path: str, mode: str = "match", **params: str) -> list[str]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return sorted(e["resource"]["id"] for e in response.json()["entry"]
                  if e["search"]["mode"] == mode)


@pytest.mark.parametrize(("params", "expected"), [
    ({"code": f"{LOINC}|718-7"}, ["o1", "o3"]),
    ({"code": "718-7"}, ["o1", "o3"]),
    ({"code": f"{LOINC}|"}, ["o1", "o2", "o3"]),
    ({"code": "|718-7"}, []),
    ({"status:not": "final"}, ["o2"]),
    ({"code:text": "lab 6690"}, ["o2"]),
    ({"code": "718-7,6690-2", "status": "final"}, ["o1", "o3"]),
    ({"category": "laboratory"}, ["o1", "o2", "o3"]),
], ids=str)
def test_token_parameters(data: Served, client: httpx.Client, params: dict, expected: list):
    assert ids(client, "/Observation", **params) == expected


@pytest.mark.parametrize(("params", "expected"), [
    ({"subject": "Patient/p1"}, ["o1", "o2"]),
    ({"subject": "p2"}, ["o3"]),
    ({"patient": "p1"}, ["o1", "o2"]),
    ({"subject:Patient": "p2"}, ["o3"]),
    ({"specimen": "Specimen/s1"}, ["o1"]),
    ({"subject:Patient.identifier": "urn:test:pseudo|P2"}, ["o3"]),
    ({"subject.gender": "female"}, ["o1", "o2"]),
    ({"research-study": "ResearchStudy/study1"}, ["o1"]),
    ({"research-study.identifier": f"{EUCT}|2024-000001-11-00"}, ["o1"]),
], ids=str)
def test_reference_parameters_and_chains(data: Served, client: httpx.Client, params: dict,
                                         expected: list):
    assert ids(client, "/Observation", **params) == expected


def test_absolute_references_on_this_server_are_understood(data: Served,
                                                           client: httpx.Client):
    assert ids(client, "/Observation", subject=f"{data.base}/Patient/p2") == ["o3"]


@pytest.mark.parametrize(("params", "expected"), [
    ({"date": "2026-01-10"}, ["o1"]),
    ({"date": "ge2026-01-01"}, ["o1", "o2"]),
    ({"date": "lt2026-01-01"}, ["o3"]),
    ({"date": "2026"}, ["o1", "o2"]),
    ({"date": "gt2026-01-10T08:59:00Z"}, ["o1", "o2"]),  # 10:00+01:00 is 09:00Z
    ({"date": "gt2026-01-10T09:00:00Z"}, ["o2"]),
], ids=str)
def test_date_parameters(data: Served, client: httpx.Client, params: dict, expected: list):
    assert ids(client, "/Observation", **params) == expected


@pytest.mark.parametrize(("params", "expected"), [
    ({"value-quantity": f"gt10|{UCUM}|g/dL"}, ["o1"]),
    ({"value-quantity": "lt10"}, ["o2", "o3"]),
    ({"value-quantity": "9.0"}, ["o3"]),
    ({"code-value-quantity": f"{LOINC}|718-7$gt10"}, ["o1"]),
], ids=str)
def test_quantity_and_composite_parameters(data: Served, client: httpx.Client, params: dict,
                                           expected: list):
    assert ids(client, "/Observation", **params) == expected


def test_string_uri_and_other_types(data: Served, client: httpx.Client):
    assert ids(client, "/Organization", name="osped") == ["org1"]
    assert ids(client, "/Organization", **{"name:exact": "Ospedale Niguarda"}) == ["org1"]
    assert ids(client, "/Organization", **{"name:exact": "ospedale niguarda"}) == []
    assert ids(client, "/Organization", **{"name:contains": "guard"}) == ["org1"]
    assert ids(client, "/ResearchStudy", title="car-t") == ["study1"]
    assert ids(client, "/Observation",
               _profile="http://example.org/StructureDefinition/lab") == ["o1"]
    assert ids(client, "/Patient", birthdate="1970") == ["p1"]
    assert ids(client, "/Specimen", accession="urn:test:acc|A-1") == ["s1"]
    assert ids(client, "/Specimen", **{"research-study": "study1"}) == ["s1"]
    assert ids(client, "/ResearchSubject", **{"study.identifier": "2024-000001-11-00"}
               ) == ["rs1"]
    assert ids(client, "/Patient", **{"_has:Observation:subject:code": "6690-2"}) == ["p1"]
    assert ids(client, "/Observation", _id="o2,o3") == ["o2", "o3"]


def test_include_and_revinclude_add_entries_in_include_mode(data: Served,
                                                           client: httpx.Client):
    params = {"code": "718-7", "_include": "Observation:subject"}
    assert ids(client, "/Observation", **params) == ["o1", "o3"]
    assert ids(client, "/Observation", "include", **params) == ["p1", "p2"]
    rev = {"_id": "p1", "_revinclude": "Observation:subject"}
    assert ids(client, "/Patient", **rev) == ["p1"]
    assert ids(client, "/Patient", "include", **rev) == ["o1", "o2"]
    iterate = {"_id": "o1", "_include": "Observation:specimen",
               "_include:iterate": "Specimen:subject"}
    assert ids(client, "/Observation", "include", **iterate) == ["p1", "s1"]


def test_summary_count_true_and_elements_shape_the_answer(data: Served, client: httpx.Client):
    count = client.get("/Observation", params={"_summary": "count"}).json()
    assert count["total"] == 3
    assert count["entry"] == []
    summary = client.get("/Observation", params={"_id": "o1", "_summary": "true"}).json()
    resource = summary["entry"][0]["resource"]
    assert "specimen" not in resource  # not a summary element of Observation
    assert "code" in resource
    assert resource["meta"]["tag"][0]["code"] == "SUBSETTED"
    elements = client.get("/Observation", params={"_id": "o1", "_elements": "status"}).json()
    assert set(elements["entry"][0]["resource"]) == {"resourceType", "id", "meta", "status"}


def test_total_accurate_and_sort(data: Served, client: httpx.Client):
    bundle = client.get("/Observation", params={"_total": "accurate", "_sort": "-date"}).json()
    assert bundle["total"] == 3
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["o2", "o1", "o3"]
    assert "total" not in client.get("/Observation").json()


def test_next_and_previous_links_page_through_every_match(data: Served, client: httpx.Client):
    first = client.get("/Observation", params={"_count": 2, "_sort": "date"}).json()
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert "previous" not in links
    assert parse_qs(urlsplit(links["self"]).query)["_count"] == ["2"]
    second = httpx.get(links["next"]).json()
    ids_seen = [e["resource"]["id"] for e in first["entry"] + second["entry"]]
    assert ids_seen == ["o3", "o1", "o2"]
    back = {link["relation"]: link["url"] for link in second["link"]}
    assert "next" not in back
    assert [e["resource"]["id"] for e in httpx.get(back["previous"]).json()["entry"]] == [
        "o3", "o1"]


def test_lenient_search_ignores_unknown_parameters_and_says_so(data: Served,
                                                              client: httpx.Client):
    bundle = client.get("/Observation", params={"colour": "red", "code": "718-7"}).json()
    assert sorted(e["resource"]["id"] for e in bundle["entry"]
                  if e["search"]["mode"] == "match") == ["o1", "o3"]
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "colour" not in self_link
    assert "code=718-7" in self_link
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes[0]["resource"]["issue"][0]["severity"] == "warning"


@pytest.mark.parametrize("params", [{"colour": "red"}, {"date": "ge-tomorrow"},
                                    {"_count": "many"}, {"_sort": "colour"}], ids=str)
def test_strict_handling_answers_400_for_unknown_or_malformed_parameters(
        data: Served, client: httpx.Client, params: dict):
    response = client.get("/Observation", params=params,
                          headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_post_search_takes_form_parameters(data: Served, client: httpx.Client):
    response = client.post("/Observation/_search", data={"code": "718-7", "status": "final"})
    assert response.status_code == 200
    assert sorted(e["resource"]["id"] for e in response.json()["entry"]) == ["o1", "o3"]
    wrong = client.post("/Observation/_search", json={"code": "718-7"})
    assert wrong.status_code == 415


def test_search_inside_a_batch(data: Served, client: httpx.Client):
    body = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation?code=718-7&status=final"}}]}
    answer = client.post("", json=body).json()
    inner = answer["entry"][0]["resource"]
    assert sorted(e["resource"]["id"] for e in inner["entry"]) == ["o1", "o3"]


def test_the_published_search_parameter_is_served(data: Served, client: httpx.Client):
    sp = client.get("/SearchParameter/research-study").json()
    assert sp["code"] == "research-study"
    assert sp["base"] == ["Group", "Observation", "Specimen"]  # Group: the study cohorts
    listed = client.get("/SearchParameter").json()
    assert [e["resource"]["id"] for e in listed["entry"]] == ["research-study"]
    assert client.get("/SearchParameter/Observation-code").status_code == 404

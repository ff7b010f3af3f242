"""Validation of writes: the R4 JSON schema and the R4B models, as 422 OperationOutcomes."""

from __future__ import annotations

import httpx
import pytest

from gateway.api.fhir.outcomes import FhirError
from gateway.api.fhir.validation import resource_types, validate_resource

from .conftest import Served, serving

OBSERVATION = {
    "resourceType": "Observation", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2026-01-02T10:00:00+01:00",
    "valueQuantity": {"value": 12.1, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                      "code": "g/dL"},
}


def problems(resource: dict) -> list[tuple[str, str]]:
    with pytest.raises(FhirError) as caught:
        validate_resource(resource)
    assert caught.value.status == 422
    return [(i["code"], i["expression"][0]) for i in caught.value.outcome["issue"]]


def test_a_valid_observation_passes():
    validate_resource(OBSERVATION)


def test_a_code_outside_the_required_binding_is_named_by_its_path():
    assert problems({**OBSERVATION, "status": "done"}) == [("value", "Observation.status")]


def test_a_missing_required_element_is_named_by_its_path():
    resource = {k: v for k, v in OBSERVATION.items() if k != "code"}
    assert problems(resource) == [("required", "Observation.code")]


def test_an_unknown_element_and_a_malformed_date_are_both_reported():
    resource = {**OBSERVATION, "colour": "red", "effectiveDateTime": "2026-13-01"}
    assert set(problems(resource)) == {("structure", "Observation.colour"),
                                       ("value", "Observation.effectiveDateTime")}


def test_nested_paths_carry_list_indexes():
    resource = {**OBSERVATION, "code": {"coding": [{"system": 3}]}}
    assert problems(resource) == [("structure", "Observation.code.coding[0].system")]


def test_model_rules_beyond_the_schema_are_enforced():
    resource = {**OBSERVATION, "valueString": "high"}  # two value[x]
    codes = problems(resource)
    assert codes and all(path.startswith("Observation") for _, path in codes)


def test_diagnostics_never_echo_the_offending_value():
    with pytest.raises(FhirError) as caught:
        validate_resource({**OBSERVATION, "status": "ROSSI-MARIO"})
    assert "ROSSI" not in str(caught.value.outcome)


def test_an_unknown_resource_type_is_422():
    assert problems({"resourceType": "Unicorn"}) == [("not-supported", "resourceType")]
    assert "Observation" in resource_types()


def test_the_api_answers_422_with_expressions_for_an_invalid_create(
        fresh_client: httpx.Client):
    client = fresh_client
    response = client.post("/Observation", json={**OBSERVATION, "status": "done"})
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Observation.status"]
    assert client.get("/Observation/_history").json()["total"] == 0


def test_writes_through_the_api_leave_outbox_rows_with_the_api_headers(
        shared_server: Served, client: httpx.Client):
    response = client.post("/Observation", json=OBSERVATION,
                           headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-"
                                                   "b7ad6b7169203331-01"})
    assert response.status_code == 201
    key = f"Observation/{response.json()['id']}"
    rows = [r for r in shared_server.store.outbox_fetch(limit=10_000) if r.key == key]
    assert len(rows) == 1
    assert rows[0].headers["site"] == "api"
    assert rows[0].headers["traceparent"].startswith("00-0af7")
    assert rows[0].headers["message-id"]


def test_api_writes_name_the_node_as_ingest_does(store):
    with serving(store, origin="hub-1") as served, served.client() as http:
        created = http.post("/Observation", json=OBSERVATION).json()
    assert created["meta"]["source"] == "urn:plagencell:node:hub-1"
    (row,) = store.outbox_fetch()
    assert row.headers["origin"] == "hub-1"
    assert row.headers["traceparent"].startswith("00-")

"""HTTP conformance: media types, _format, 406/415/404/405, gzip, OperationOutcome errors."""

from __future__ import annotations

import gzip

import httpx
import pytest

from gateway.api.fhir.outcomes import status_for

from .conftest import FHIR_JSON, Served

PATIENT = {"resourceType": "Patient", "gender": "female"}


@pytest.mark.parametrize("fmt", ["json", "application/json", "application/fhir+json"])
def test_format_json_variants_are_served_as_fhir_json(client: httpx.Client, fmt: str):
    response = client.get("/metadata", params={"_format": fmt})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json; fhirVersion=4.0"


@pytest.mark.parametrize("accept", ["application/json", "application/fhir+json", "*/*",
                                    "text/html,application/xhtml+xml,*/*;q=0.8"])
def test_json_and_generic_accept_headers_get_fhir_json(shared_server: Served, accept: str):
    response = httpx.get(f"{shared_server.base}/metadata", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.json()["resourceType"] == "CapabilityStatement"


def test_xml_by_format_or_accept_is_406_with_an_operation_outcome(client: httpx.Client):
    for response in (client.get("/metadata", params={"_format": "xml"}),
                     client.get("/Patient/x", params={"_format": "application/fhir+xml"}),
                     client.get("/metadata", headers={"Accept": "application/fhir+xml"})):
        assert response.status_code == 406
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.headers["content-type"].startswith(FHIR_JSON)


def test_a_body_in_another_media_type_is_415(client: httpx.Client):
    xml = client.post("/Patient", content=b"<Patient xmlns='http://hl7.org/fhir'/>",
                      headers={"Content-Type": "application/fhir+xml"})
    assert xml.status_code == 415
    assert xml.json()["issue"][0]["code"] == "not-supported"
    text = client.post("/Patient", content=b"{}", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415


def test_plain_application_json_bodies_are_accepted(client: httpx.Client):
    response = client.post("/Patient", json=PATIENT,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 201


def test_a_body_that_is_not_json_or_not_a_resource_is_400(client: httpx.Client):
    broken = client.post("/Patient", content=b"{not json",
                         headers={"Content-Type": FHIR_JSON})
    assert broken.status_code == 400
    assert broken.json()["issue"][0]["code"] == "structure"
    array = client.post("/Patient", content=b"[1]", headers={"Content-Type": FHIR_JSON})
    assert array.status_code == 400


def test_an_unknown_resource_type_is_404_with_an_operation_outcome(client: httpx.Client):
    for response in (client.get("/Unicorn/1"), client.get("/Unicorn"),
                     client.post("/Unicorn", json={"resourceType": "Unicorn"}),
                     client.get("/MedicationRequest/1")):
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"


def test_an_unsupported_method_is_405_with_an_operation_outcome(client: httpx.Client):
    for response in (client.patch("/Patient/1", json={}), client.delete("/metadata"),
                     client.put("/Patient", json=PATIENT)):
        assert response.status_code == 405, response.text
        assert response.json()["issue"][0]["code"] == "not-supported"


def test_paths_outside_the_api_get_an_operation_outcome_404(client: httpx.Client):
    response = client.get("/Patient/1/extra/segments/here")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_large_answers_are_gzipped_when_the_client_accepts_gzip(shared_server: Served):
    with httpx.Client() as raw:
        request = raw.build_request("GET", f"{shared_server.base}/metadata",
                                    headers={"Accept-Encoding": "gzip"})
        response = raw.send(request, stream=True)
        body = response.read()  # httpx decodes; check the header and the raw size
        assert response.headers["content-encoding"] == "gzip"
        assert response.json()["resourceType"] == "CapabilityStatement"
        assert len(gzip.compress(body)) < len(body)


def test_writes_to_the_published_search_parameters_are_refused(client: httpx.Client):
    response = client.post("/SearchParameter", json={"resourceType": "SearchParameter"})
    assert response.status_code == 405


@pytest.mark.parametrize(("code", "status"), [
    ("invalid", 400), ("not-found", 404), ("not-supported", 405), ("conflict", 409),
    ("deleted", 410), ("multiple-matches", 412), ("required", 422), ("value", 422),
    ("structure", 422), ("processing", 422), ("exception", 500)])
def test_each_issue_code_maps_to_its_http_status(code: str, status: int):
    assert status_for(code) == status

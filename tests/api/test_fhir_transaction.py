"""Batch and transaction Bundles: atomicity, R4 processing order, urn:uuid resolution."""

from __future__ import annotations

import uuid

import httpx

from .conftest import FHIR_JSON


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def observation(subject: str, status: str = "final") -> dict:
    return {"resourceType": "Observation", "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
            "subject": {"reference": subject}}


def bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(full_url: str, resource: dict, **request: str) -> dict:
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"], **request}}


def send(client: httpx.Client, body: dict) -> httpx.Response:
    return client.post("", json=body, headers={"Content-Type": FHIR_JSON})


def test_a_transaction_resolves_urn_uuid_references_to_the_new_ids(client: httpx.Client):
    patient_urn = urn()
    answer = send(client, bundle("transaction",
                                 post(urn(), observation(patient_urn)),
                                 post(patient_urn, {"resourceType": "Patient"})))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["type"] == "transaction-response"
    obs_entry, patient_entry = body["entry"]
    assert obs_entry["response"]["status"] == "201 Created"
    patient_id = patient_entry["resource"]["id"]
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    assert patient_entry["response"]["location"].endswith(f"Patient/{patient_id}/_history/1")
    stored = client.get(f"/Observation/{obs_entry['resource']['id']}").json()
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"


def test_a_transaction_with_one_invalid_entry_writes_nothing(client: httpx.Client):
    pid = f"tx-{uuid.uuid4().hex[:8]}"
    answer = send(client, bundle(
        "transaction",
        {"resource": {"resourceType": "Patient", "id": pid},
         "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        post(urn(), observation(f"Patient/{pid}", status="not-a-status"))))
    assert answer.status_code == 422
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"].startswith("entry 1:")
    assert outcome["issue"][0]["expression"] == ["Observation.status"]
    assert client.get(f"/Patient/{pid}").status_code == 404


def test_a_transaction_whose_reference_does_not_resolve_is_422_and_writes_nothing(
        client: httpx.Client):
    pid = f"tx-{uuid.uuid4().hex[:8]}"
    answer = send(client, bundle(
        "transaction",
        {"resource": {"resourceType": "Patient", "id": pid},
         "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        post(urn(), observation("Patient/does-not-exist"))))
    assert answer.status_code == 422
    assert answer.json()["issue"][0]["expression"] == ["Observation.subject.reference"]
    assert client.get(f"/Patient/{pid}").status_code == 404


def test_an_urn_uuid_that_names_no_entry_is_422(client: httpx.Client):
    answer = send(client, bundle("transaction", post(urn(), observation(urn()))))
    assert answer.status_code == 422


def test_a_transaction_runs_deletes_before_creates_and_reads_last(client: httpx.Client):
    pid = f"tx-{uuid.uuid4().hex[:8]}"
    client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid})
    answer = send(client, bundle(
        "transaction",
        {"request": {"method": "GET", "url": f"Patient/{pid}/_history/3"}},
        {"request": {"method": "GET", "url": f"Patient/{pid}/_history/2"}},
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "male"},
         "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"request": {"method": "DELETE", "url": f"Patient/{pid}"}}))
    assert answer.status_code == 200, answer.text
    read, read_deleted, put, delete = answer.json()["entry"]
    assert delete["response"]["status"] == "200 OK"
    assert put["response"]["status"] == "201 Created"  # re-created after the delete
    assert put["resource"]["meta"]["versionId"] == "3"
    assert read["resource"]["gender"] == "male"  # reads see the committed writes
    assert read_deleted["response"]["status"] == "410 Gone"  # version 2 is the delete
    assert client.get(f"/Patient/{pid}").json()["gender"] == "male"


def test_a_version_conflict_inside_a_transaction_rolls_everything_back(client: httpx.Client):
    pid, other = (f"tx-{uuid.uuid4().hex[:8]}" for _ in range(2))
    client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid})
    answer = send(client, bundle(
        "transaction",
        {"resource": {"resourceType": "Patient", "id": other},
         "request": {"method": "PUT", "url": f"Patient/{other}"}},
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "male"},
         "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"7"'}}))
    assert answer.status_code == 412
    assert client.get(f"/Patient/{other}").status_code == 404


def test_a_batch_runs_entries_independently_with_an_outcome_per_failure(client: httpx.Client):
    answer = send(client, bundle(
        "batch",
        post(urn(), {"resourceType": "Patient", "gender": "female"}),
        post(urn(), {"resourceType": "Patient", "gender": "sometimes"}),
        {"request": {"method": "GET", "url": "Patient/none-such"}}))
    assert answer.status_code == 200
    ok, bad, missing = answer.json()["entry"]
    assert answer.json()["type"] == "batch-response"
    assert ok["response"]["status"] == "201 Created"
    assert client.get(f"/Patient/{ok['resource']['id']}").status_code == 200
    assert bad["response"]["status"].startswith("422 ")
    assert bad["response"]["outcome"]["issue"][0]["expression"] == ["Patient.gender"]
    assert missing["response"]["status"] == "404 Not Found"


def test_a_bundle_of_another_type_or_without_request_is_400(client: httpx.Client):
    assert send(client, bundle("collection")).status_code == 400
    assert send(client, bundle("transaction", {"resource": {"resourceType": "Patient"}})
                ).status_code == 400


def test_prefer_minimal_leaves_the_written_resources_out_of_the_response(client: httpx.Client):
    body = bundle("transaction", post(urn(), {"resourceType": "Patient"}))
    answer = client.post("", json=body, headers={"Prefer": "return=minimal"}).json()
    (entry,) = answer["entry"]
    assert "resource" not in entry
    assert entry["response"]["location"]

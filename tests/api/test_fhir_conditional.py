"""Conditional create, update and delete; N parallel identical creates make one resource."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from .conftest import FHIR_JSON, Served


def patient(mrn: str, **extra: object) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": mrn}],
            **extra}


def criteria(mrn: str) -> str:
    return f"identifier=urn:test:mrn|{mrn}"


def new_mrn() -> str:
    return uuid.uuid4().hex[:12]


def test_if_none_exist_creates_once_then_answers_200_with_the_existing(client: httpx.Client):
    mrn = new_mrn()
    headers = {"If-None-Exist": criteria(mrn), "Content-Type": FHIR_JSON}
    first = client.post("/Patient", json=patient(mrn), headers=headers)
    assert first.status_code == 201
    again = client.post("/Patient", json=patient(mrn, gender="male"), headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert "gender" not in again.json()  # the existing resource, untouched


def test_if_none_exist_matching_several_is_412(client: httpx.Client):
    mrn = new_mrn()
    client.post("/Patient", json=patient(mrn))
    client.post("/Patient", json=patient(mrn))
    response = client.post("/Patient", json=patient(mrn),
                           headers={"If-None-Exist": criteria(mrn)})
    assert response.status_code == 412
    assert response.json()["issue"][0]["code"] == "multiple-matches"


async def test_twenty_parallel_identical_conditional_creates_make_exactly_one(
        shared_server: Served):
    mrn = new_mrn()
    async with httpx.AsyncClient(base_url=shared_server.base, timeout=60) as http:
        answers = await asyncio.gather(*(
            http.post("/Patient", json=patient(mrn),
                      headers={"If-None-Exist": criteria(mrn), "Content-Type": FHIR_JSON})
            for _ in range(20)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * 19 + [201], [a.text for a in answers if a.status_code >= 300]
        assert len({a.json()["id"] for a in answers}) == 1
        found = (await http.get("/Patient", params={"identifier": f"urn:test:mrn|{mrn}",
                                                    "_total": "accurate"})).json()
        assert found["total"] == 1


def test_conditional_update_creates_when_nothing_matches_and_updates_one_match(
        client: httpx.Client):
    mrn = new_mrn()
    created = client.put(f"/Patient?{criteria(mrn)}", json=patient(mrn))
    assert created.status_code == 201
    pid = created.json()["id"]
    updated = client.put(f"/Patient?{criteria(mrn)}", json=patient(mrn, gender="female"))
    assert updated.status_code == 200
    assert updated.json()["id"] == pid
    assert updated.json()["meta"]["versionId"] == "2"


def test_conditional_update_with_several_matches_is_412(client: httpx.Client):
    mrn = new_mrn()
    client.post("/Patient", json=patient(mrn))
    client.post("/Patient", json=patient(mrn))
    response = client.put(f"/Patient?{criteria(mrn)}", json=patient(mrn, gender="male"))
    assert response.status_code == 412


def test_conditional_update_with_another_id_in_the_body_is_400(client: httpx.Client):
    mrn = new_mrn()
    client.put(f"/Patient?{criteria(mrn)}", json=patient(mrn))
    response = client.put(f"/Patient?{criteria(mrn)}", json={**patient(mrn), "id": "other"})
    assert response.status_code == 400


def test_conditional_delete_removes_the_single_match(client: httpx.Client):
    mrn = new_mrn()
    pid = client.post("/Patient", json=patient(mrn)).json()["id"]
    assert client.delete(f"/Patient?{criteria(mrn)}").status_code == 200
    assert client.get(f"/Patient/{pid}").status_code == 410


def test_a_transaction_resolves_conditional_references_and_if_none_exist(
        client: httpx.Client):
    mrn = new_mrn()
    pid = client.post("/Patient", json=patient(mrn)).json()["id"]
    body = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0f4a2c1e-0000-4000-8000-000000000001", "resource": patient(mrn),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria(mrn)}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "Hb"},
                      "subject": {"reference": f"Patient?{criteria(mrn)}"},
                      "focus": [{"reference": "urn:uuid:0f4a2c1e-0000-4000-8000-000000000001"}]},
         "request": {"method": "POST", "url": "Observation"}}]}
    answer = client.post("", json=body)
    assert answer.status_code == 200, answer.text
    existing, obs = answer.json()["entry"]
    assert existing["response"]["status"] == "200 OK"
    assert obs["resource"]["subject"]["reference"] == f"Patient/{pid}"
    assert obs["resource"]["focus"][0]["reference"] == f"Patient/{pid}"


def test_a_conditional_reference_that_matches_nothing_fails_the_transaction(
        client: httpx.Client):
    body = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
                      "subject": {"reference": f"Patient?{criteria(new_mrn())}"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    assert client.post("", json=body).status_code == 422

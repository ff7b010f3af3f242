"""Read, vread, create, update, delete, history and the version headers, over real HTTP."""

from __future__ import annotations

import httpx

from .conftest import FHIR_JSON, Served, serving

PATIENT = {"resourceType": "Patient", "gender": "female", "birthDate": "1970"}


def create(client: httpx.Client, resource: dict, **headers: str) -> httpx.Response:
    response = client.post(f"/{resource['resourceType']}", json=resource,
                           headers={"Content-Type": FHIR_JSON, **headers})
    assert response.status_code in (200, 201), response.text
    return response


def test_create_answers_201_with_location_etag_and_the_stored_resource(client: httpx.Client,
                                                                        shared_server: Served):
    response = create(client, PATIENT)
    assert response.status_code == 201
    body = response.json()
    assert body["meta"]["versionId"] == "1"
    assert response.headers["location"] == f"{shared_server.base}/Patient/{body['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["content-type"] == "application/fhir+json; fhirVersion=4.0"
    assert "last-modified" in response.headers


def test_read_returns_the_current_version_with_etag_and_last_modified(client: httpx.Client):
    created = create(client, PATIENT).json()
    response = client.get(f"/Patient/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")


def test_read_of_an_unknown_id_is_404_with_an_operation_outcome(client: httpx.Client):
    response = client.get("/Patient/nope")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "not-found"


def test_update_makes_version_2_and_vread_still_returns_version_1(client: httpx.Client):
    pid = create(client, PATIENT).json()["id"]
    response = client.put(f"/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "male"})
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["etag"] == 'W/"2"'
    assert client.get(f"/Patient/{pid}/_history/1").json()["gender"] == "female"
    assert client.get(f"/Patient/{pid}/_history/2").json()["gender"] == "male"
    assert client.get(f"/Patient/{pid}/_history/3").status_code == 404
    assert client.get(f"/Patient/{pid}/_history/x").status_code == 404


def test_update_with_identical_content_keeps_the_version(client: httpx.Client):
    pid = create(client, PATIENT).json()["id"]
    response = client.put(f"/Patient/{pid}", json={**PATIENT, "id": pid})
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "1"


def test_update_of_a_new_id_creates_it_with_201(client: httpx.Client, shared_server: Served):
    response = client.put("/Patient/client-chosen-1", json={**PATIENT, "id": "client-chosen-1"})
    assert response.status_code == 201
    location = f"{shared_server.base}/Patient/client-chosen-1/_history/1"
    assert response.headers["location"] == location
    assert client.get("/Patient/client-chosen-1").status_code == 200


def test_update_whose_body_id_differs_from_the_url_is_400(client: httpx.Client):
    response = client.put("/Patient/a", json={**PATIENT, "id": "b"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.id"]


def test_create_of_another_type_than_the_url_is_400(client: httpx.Client):
    response = client.post("/Observation", json=PATIENT)
    assert response.status_code == 400


def test_if_match_with_a_stale_version_is_412_and_the_current_one_succeeds(
        client: httpx.Client):
    pid = create(client, PATIENT).json()["id"]
    body = {**PATIENT, "id": pid, "gender": "male"}
    assert client.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'}
                      ).status_code == 200
    stale = client.put(f"/Patient/{pid}", json={**body, "gender": "other"},
                       headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{pid}").json()["gender"] == "male"


def test_if_none_match_and_if_modified_since_answer_304_when_current(client: httpx.Client):
    pid = create(client, PATIENT).json()["id"]
    first = client.get(f"/Patient/{pid}")
    same = client.get(f"/Patient/{pid}", headers={"If-None-Match": first.headers["etag"]})
    assert same.status_code == 304
    assert same.content == b""
    since = client.get(f"/Patient/{pid}",
                       headers={"If-Modified-Since": first.headers["last-modified"]})
    assert since.status_code == 304
    client.put(f"/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "male"})
    changed = client.get(f"/Patient/{pid}", headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200
    older = client.get(f"/Patient/{pid}",
                       headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert older.status_code == 200


def test_delete_then_read_is_410_gone_and_history_shows_the_delete(client: httpx.Client):
    pid = create(client, PATIENT).json()["id"]
    deleted = client.delete(f"/Patient/{pid}")
    assert deleted.status_code == 200
    assert deleted.json()["resourceType"] == "OperationOutcome"
    gone = client.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    history = client.get(f"/Patient/{pid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert history["entry"][0]["response"]["status"].startswith("410")


def test_delete_with_prefer_minimal_is_204(client: httpx.Client):
    pid = create(client, PATIENT).json()["id"]
    response = client.delete(f"/Patient/{pid}", headers={"Prefer": "return=minimal"})
    assert response.status_code == 204


def test_prefer_return_minimal_and_operation_outcome_shape_the_write_answer(
        client: httpx.Client):
    minimal = create(client, PATIENT, Prefer="return=minimal")
    assert minimal.content == b""
    assert minimal.headers["location"]
    outcome = create(client, PATIENT, Prefer="return=OperationOutcome")
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.headers["etag"] == 'W/"1"'
    full = create(client, PATIENT, Prefer="return=representation")
    assert full.json()["resourceType"] == "Patient"


def test_history_of_instance_type_and_system_honour_count_and_since(
        fresh_client: httpx.Client):
    client = fresh_client
    pid = create(client, PATIENT).json()["id"]
    client.put(f"/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "male"})
    org = create(client, {"resourceType": "Organization", "name": "Cell factory"}).json()
    instance = client.get(f"/Patient/{pid}/_history").json()
    assert instance["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in instance["entry"]] == ["2", "1"]
    first = client.get(f"/Patient/{pid}/_history", params={"_count": 1}).json()
    assert [e["resource"]["meta"]["versionId"] for e in first["entry"]] == ["2"]
    following = next(lnk["url"] for lnk in first["link"] if lnk["relation"] == "next")
    second = httpx.get(following).json()
    assert [e["resource"]["meta"]["versionId"] for e in second["entry"]] == ["1"]
    assert [lnk["relation"] for lnk in second["link"]] == ["self"]
    by_type = client.get("/Patient/_history").json()
    assert {e["resource"]["id"] for e in by_type["entry"]} == {pid}
    system = client.get("/_history").json()
    assert {e["resource"]["resourceType"] for e in system["entry"]} == {"Patient",
                                                                       "Organization"}
    since = org["meta"]["lastUpdated"]
    recent = client.get("/_history", params={"_since": since}).json()
    assert [e["resource"]["id"] for e in recent["entry"]] == [org["id"]]


def test_history_with_a_malformed_since_is_400(client: httpx.Client):
    response = client.get("/_history", params={"_since": "yesterday"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_since"]


def test_history_of_an_unknown_resource_is_404(client: httpx.Client):
    assert client.get("/Patient/nope/_history").status_code == 404


def test_repeated_reads_answer_alike_on_the_reused_connection(store):
    with serving(store) as served, served.client() as http:
        pid = create(http, PATIENT).json()["id"]
        for _ in range(3):  # several reads reuse the event loop's read connection
            response = http.get(f"/Patient/{pid}")
            assert response.status_code == 200
            assert response.headers["etag"] == 'W/"1"'
        assert http.get("/Patient/unknown").status_code == 404
        http.delete(f"/Patient/{pid}")
        assert http.get(f"/Patient/{pid}").status_code == 410


def test_summary_and_elements_trim_a_read(client: httpx.Client):
    pid = create(client, {**PATIENT, "text": {"status": "generated",
                                              "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}
                 ).json()["id"]
    summary = client.get(f"/Patient/{pid}", params={"_summary": "true"}).json()
    assert "text" not in summary and summary["gender"] == "female"
    assert summary["meta"]["tag"][0]["code"] == "SUBSETTED"
    elements = client.get(f"/Patient/{pid}", params={"_elements": "birthDate"}).json()
    assert set(elements) == {"resourceType", "id", "meta", "birthDate"}
    assert "text" in client.get(f"/Patient/{pid}", params={"_format": "json"}).json()


def test_history_pages_never_split_versions_that_share_an_instant(fhir_server: Served):
    fhir_server.store.bulk_put([{"resourceType": "Organization", "id": f"bulk-{i}"}
                                for i in range(5)])  # five versions, one lastUpdated
    with fhir_server.client() as http:
        for i in range(3):
            create(http, {"resourceType": "Organization", "name": f"org {i}"})
        seen: list[tuple[str, str]] = []
        url: str | None = f"{fhir_server.base}/Organization/_history?_count=2"
        while url:
            page = http.get(url).json()
            seen += [(e["resource"]["id"], e["resource"]["meta"]["versionId"])
                     for e in page["entry"]]
            url = next((lnk["url"] for lnk in page["link"] if lnk["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == 8


def test_a_study_cohort_group_is_read_only_through_the_api(client: httpx.Client) -> None:
    """The hub derives a study's cohort Group from its ResearchSubjects: a client's PUT,
    DELETE or transaction entry on it answers 422 and leaves it as it was; a Group of the
    client's own stays writable, and may not claim the hub's meta.source."""
    from gateway.store.cohort import SOURCE, group_id

    study = create(client, {"resourceType": "ResearchStudy", "status": "active"}).json()
    gid = group_id(study["id"])
    cohort = client.get(f"/Group/{gid}").json()
    assert cohort["meta"]["source"] == SOURCE
    changed = {**cohort, "name": "renamed by a client"}
    put = client.put(f"/Group/{gid}", json=changed, headers={"Content-Type": FHIR_JSON})
    assert put.status_code == 422, put.text
    assert put.json()["issue"][0]["code"] == "business-rule"
    assert client.delete(f"/Group/{gid}").status_code == 422
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": changed, "request": {"method": "PUT", "url": f"Group/{gid}"}}]}
    assert client.post("", json=bundle,
                       headers={"Content-Type": FHIR_JSON}).status_code == 422
    assert client.get(f"/Group/{gid}").json() == cohort
    own = create(client, {"resourceType": "Group", "type": "person", "actual": False}).json()
    assert client.delete(f"/Group/{own['id']}").status_code == 200
    claiming = {"resourceType": "Group", "type": "person", "actual": True,
                "meta": {"source": SOURCE}}
    assert client.post("/Group", json=claiming,
                       headers={"Content-Type": FHIR_JSON}).status_code == 422

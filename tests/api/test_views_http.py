"""``$viewdefinition-run`` and stored ViewDefinitions through a real server, on SQLite and
PostgreSQL: the three formats, stored and inline views, inline resources, the filters,
bad input answered before anything runs, scopes and the per-study restriction."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.store.sql import SqlStore
from tests.api.export_support import observation, patient, study, subject

from .views_support import ViewServer, run_body, view_server

OBS_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition", "resource": "Observation", "status": "active",
    "name": "observations",
    "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"},
        {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
        {"name": "code", "path": "code.coding.first().code"},
        {"name": "value", "path": "value.ofType(Quantity).value"},
        {"name": "effective", "path": "effective.ofType(dateTime)"}]}]}
GROUP = {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
         "member": [{"entity": {"reference": "Patient/p2"}}]}


@pytest.fixture
def server(store: SqlStore) -> Iterator[ViewServer]:
    with store.transaction() as tx:
        tx.put_many([patient("p1"), patient("p2"), study("s1"), subject("s1", "p1"),
                     observation("o1", "p1", "1988-5", "2026-11-01T10:00:00Z"),
                     observation("o2", "p1", "26464-8", "2026-11-02T10:00:00Z"),
                     observation("o3", "p2", "1988-5", "2026-11-03T10:00:00Z"), GROUP])
    with view_server(store) as served:
        yield served


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r["id"] for r in rows)


def test_an_inline_view_runs_over_the_servers_data_as_json_ndjson_and_csv(
        server: ViewServer) -> None:
    with server.client() as http:
        as_json = http.post("/$viewdefinition-run", json=run_body(OBS_VIEW, _format="json"))
        as_ndjson = http.post("/$viewdefinition-run", json=run_body(OBS_VIEW))
        as_csv = http.post("/$viewdefinition-run", json=run_body(OBS_VIEW, _format="csv"))
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"].startswith("application/json")
    rows = as_json.json()
    assert ids(rows) == ["o1", "o2", "o3"]
    assert {"id": "o1", "patient": "p1", "code": "1988-5", "value": 4.5,
            "effective": "2026-11-01T10:00:00Z"} in rows
    assert as_ndjson.headers["content-type"].startswith("application/x-ndjson")
    assert [orjson.loads(line) for line in as_ndjson.text.splitlines()] == rows
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(as_csv.text)))
    assert table[0] == ["id", "patient", "code", "value", "effective"]
    assert sorted(table[1:])[0] == ["o1", "p1", "1988-5", "4.5", "2026-11-01T10:00:00Z"]


def test_a_stored_view_is_created_read_searched_and_run_by_reference_and_by_instance(
        server: ViewServer) -> None:
    with server.client("analyst") as http:
        created = http.post("/ViewDefinition", json=OBS_VIEW)
        assert created.status_code == 201, created.text
        id = created.json()["id"]
        assert created.json()["meta"]["versionId"] == "1"
        assert http.get(f"/ViewDefinition/{id}").json()["name"] == "observations"
        found = http.get("/ViewDefinition", params={"name": "observations"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [id]
        by_instance = http.get(f"/ViewDefinition/{id}/$viewdefinition-run",
                               params={"_format": "csv", "header": "false"})
        by_reference = http.post("/$viewdefinition-run", json=run_body(
            viewReference=f"ViewDefinition/{id}", _format="json"))
        by_get = http.get("/$viewdefinition-run",
                          params={"viewReference": f"ViewDefinition/{id}", "_format": "json",
                                  "patient": "Patient/p1"})
        short = http.get(f"/ViewDefinition/{id}/$run", headers={"Accept": "text/csv"})
        deleted = http.delete(f"/ViewDefinition/{id}")
        gone = http.get(f"/ViewDefinition/{id}/$viewdefinition-run")
    assert by_instance.status_code == 200, by_instance.text
    assert len(by_instance.text.strip().splitlines()) == 3  # no header line
    assert ids(by_reference.json()) == ["o1", "o2", "o3"]
    assert ids(by_get.json()) == ["o1", "o2"]
    assert short.text.startswith("id,patient,code,value,effective\r\n")
    assert deleted.status_code == 200 and gone.status_code == 404


def test_inline_resources_replace_the_servers_data(server: ViewServer) -> None:
    mine = [observation("x1", "px", "1988-5"), patient("px")]
    with server.client() as http:
        answer = http.post("/$viewdefinition-run",
                           json=run_body(OBS_VIEW, _format="json", resource=mine))
    assert answer.json() == [{"id": "x1", "patient": "px", "code": "1988-5", "value": 4.5,
                              "effective": "2026-11-01T10:00:00Z"}]


def test_patient_group_since_and_limit_narrow_the_rows(server: ViewServer) -> None:
    def run(**params: Any) -> list[str]:
        with server.client() as http:
            answer = http.post("/$viewdefinition-run",
                               json=run_body(OBS_VIEW, _format="json", **params))
        assert answer.status_code == 200, answer.text
        return ids(answer.json())

    assert run(patient="Patient/p1") == ["o1", "o2"]
    assert run(group="Group/g1") == ["o3"]
    assert run(group="Group/g1", patient="Patient/p1") == []
    assert run(_since="2000-01-01T00:00:00Z") == ["o1", "o2", "o3"]
    assert run(_since="2999-01-01T00:00:00Z") == []
    assert len(run(_limit=2)) == 2


@pytest.mark.parametrize(("body", "where"), [
    (run_body({**OBS_VIEW, "select": [{"column": [{"name": "id", "path": "id.("}]}]}),
     "viewResource.select[0].column[0].path"),
    (run_body({**OBS_VIEW, "select": [{"column": [{"path": "id"}]}]}),
     "viewResource.select[0].column[0].name"),
    (run_body({**OBS_VIEW, "resource": "Spaceship"}), "viewResource.resource"),
    (run_body({**OBS_VIEW, "where": [{"path": "nonsense()"}]}), "viewResource.where[0].path"),
    (run_body(OBS_VIEW, viewReference="ViewDefinition/x"), "viewReference"),
    (run_body(OBS_VIEW, _format="xlsx"), "_format"),
    (run_body(OBS_VIEW, _format="parquet"), "_format"),
    (run_body(OBS_VIEW, _limit=0), "_limit"),
    (run_body(OBS_VIEW, _since="yesterday"), "_since"),
    (run_body(OBS_VIEW, patient="Patient/nobody"), "patient"),
    (run_body(OBS_VIEW, group="Group/none"), "group"),
    (run_body(OBS_VIEW, source="s3://bucket"), "source"),
    (run_body(OBS_VIEW, colour="blue"), "colour"),
    (run_body(), "viewResource"),
    (run_body(viewReference="ViewDefinition/unknown"), "viewReference"),
    (run_body({**OBS_VIEW, "select": [{"column": [
        {"name": "code", "path": "code.coding.code | id", "collection": False}]}]}),
     "viewResource"),  # several values in a column: found on the first page
])
def test_bad_input_is_a_400_naming_the_parameter_and_nothing_runs(
        server: ViewServer, body: dict[str, Any], where: str) -> None:
    with server.client() as http:
        answer = http.post("/$viewdefinition-run", json=body)
    assert answer.status_code == 400, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [where]
    if where == "viewResource.resource":  # the diagnostics name what was wrong
        assert "'Spaceship' is not a resource type" in outcome["issue"][0]["diagnostics"]


def test_a_view_is_checked_when_it_is_stored(server: ViewServer) -> None:
    with server.client("analyst") as http:
        bad = http.post("/ViewDefinition", json={**OBS_VIEW, "select": [
            {"column": [{"name": "1st", "path": "id"}]}]})
        no_status = http.post("/ViewDefinition", json={k: v for k, v in OBS_VIEW.items()
                                                       if k != "status"})
        listed = http.get("/ViewDefinition").json()
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["ViewDefinition.select[0].column[0].name"]
    assert no_status.status_code == 400
    assert listed["total"] == 0


def test_a_client_needs_read_on_the_views_type_and_on_stored_views(
        server: ViewServer) -> None:
    with server.client("analyst") as http:
        id = http.post("/ViewDefinition", json=OBS_VIEW).json()["id"]
    with server.client("patients-only") as http:
        refused = http.post("/$viewdefinition-run", json=run_body(OBS_VIEW))
        inline = http.post("/$viewdefinition-run",  # its own data: no server read
                           json=run_body(OBS_VIEW, resource=[observation("x", "p")]))
    with server.client("no-views") as http:
        stored = http.post("/$viewdefinition-run",
                           json=run_body(viewReference=f"ViewDefinition/{id}"))
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["expression"] == ["viewResource.resource"]
    assert inline.status_code == 200
    assert stored.status_code == 403


def test_a_study_restricted_client_gets_only_the_rows_of_its_studies(
        server: ViewServer) -> None:
    with server.client("study-s1") as http:
        rows = http.post("/$viewdefinition-run", json=run_body(OBS_VIEW, _format="json"))
        other = http.post("/$viewdefinition-run",
                          json=run_body(OBS_VIEW, patient="Patient/p2"))
        patients = http.post("/$viewdefinition-run", json=run_body(
            {"resourceType": "ViewDefinition", "resource": "Patient",
             "select": [{"column": [{"name": "id", "path": "id"}]}]}, _format="json"))
    assert ids(rows.json()) == ["o1", "o2"]  # p1 is enrolled in s1, p2 is not
    assert other.status_code == 400  # p2 is not known to this client
    assert ids(patients.json()) == ["p1"]


def test_the_capability_statement_names_the_operation_and_openapi_still_serves(
        server: ViewServer) -> None:
    with server.client() as http:
        rest = http.get("/metadata").json()["rest"][0]
        assert http.get(server.base.removesuffix("/fhir") + "/openapi.json").status_code == 200
    assert "viewdefinition-run" in {o["name"] for o in rest.get("operation", [])}
    assert "ViewDefinition" in {r["type"] for r in rest["resource"]}


def test_a_stored_view_is_found_by_its_canonical_url_and_updated_in_place(
        server: ViewServer) -> None:
    url = "https://plagencell.example.org/fhir/ViewDefinition/observations"
    with server.client("analyst") as http:
        id = http.post("/ViewDefinition", json={**OBS_VIEW, "url": url}).json()["id"]
        by_url = http.post("/$viewdefinition-run", json=run_body(
            viewReference=f"{url}|1.0", _format="json"))
        narrowed = {**OBS_VIEW, "id": id, "url": url,
                    "where": [{"path": "code.coding.code = '1988-5'"}]}
        updated = http.put(f"/ViewDefinition/{id}", json=narrowed,
                           headers={"If-Match": 'W/"1"'})
        stale = http.put(f"/ViewDefinition/{id}", json=narrowed, headers={"If-Match": 'W/"1"'})
        after = http.get(f"/ViewDefinition/{id}/$viewdefinition-run",
                         params={"_format": "json"})
    assert ids(by_url.json()) == ["o1", "o2", "o3"]
    assert updated.status_code == 200 and updated.json()["meta"]["versionId"] == "2"
    assert stale.status_code in (409, 412)
    assert ids(after.json()) == ["o1", "o3"]


def test_a_view_that_fails_after_the_first_page_ends_the_stream_without_its_end(
        store: SqlStore) -> None:
    """Pages of one resource: o1 and o2 make rows, o3 has two codings in a single-valued
    column. The answer has started (200): it must not end as a complete-looking file."""
    bad = observation("o3", "p1")
    bad["code"]["coding"].append({"system": "http://loinc.org", "code": "718-7"})
    with store.transaction() as tx:
        tx.put_many([patient("p1"), observation("o1", "p1"), observation("o2", "p1"), bad])
    view = {**OBS_VIEW, "select": [{"column": [
        {"name": "id", "path": "id"}, {"name": "code", "path": "code.coding.code"}]}]}
    with view_server(store, page=1) as served, served.client() as http:
        first_page = http.post("/$viewdefinition-run", json=run_body(
            view, _format="csv", resource=[bad]))
        assert first_page.status_code == 400  # found before the answer starts
        with pytest.raises(httpx.RemoteProtocolError), http.stream(
                "POST", "/$viewdefinition-run",
                json=run_body(view, _format="csv")) as answer:
            assert answer.status_code == 200
            answer.read()

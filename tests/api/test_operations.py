"""``Patient/{id}/$everything`` and ``Observation/$lastn`` through a real server on both
databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store.sql import SqlStore
from tests.api.export_support import (
    ExportServer,
    export_server,
    observation,
    patient,
    study,
    subject,
)


@pytest.fixture
def server(store: SqlStore, tmp_path: Path) -> Iterator[ExportServer]:
    with store.transaction() as tx:
        tx.put_many([patient("p1"), patient("p2"), study("s1"), subject("s1", "p1")]
                    + [observation(f"a{n}", "p1", "1988-5", f"2026-11-0{n + 1}T10:00:00Z")
                       for n in range(4)]
                    + [observation(f"b{n}", "p1", "26464-8", f"2026-10-0{n + 1}T10:00:00Z")
                       for n in range(3)]
                    + [observation("c0", "p2", "1988-5")])
    with export_server(store, tmp_path) as served:
        yield served


def test_everything_pages_through_the_patient_and_its_compartment_exactly_once(
        server: ExportServer) -> None:
    seen: list[str] = []
    with server.client() as http:
        page = http.get("/Patient/p1/$everything", params={"_count": "3"}).json()
        pages = 1
        while True:
            seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}"
                     for e in page["entry"]]
            following = [link["url"] for link in page["link"] if link["relation"] == "next"]
            if not following:
                break
            page, pages = http.get(following[0]).json(), pages + 1
    group = [s for s in seen if s.startswith("Group/")]
    assert sorted(s for s in seen if not s.startswith("Group/")) == sorted(
        ["Patient/p1", "ResearchSubject/s1-p1", *(f"Observation/a{n}" for n in range(4)),
         *(f"Observation/b{n}" for n in range(3))])
    assert len(group) == 1 and len(seen) == len(set(seen)) == 10 and pages == 4


def test_everything_gives_only_the_types_the_caller_may_read(server: ExportServer) -> None:
    with server.client("patients-only") as http:
        bundle = http.get("/Patient/p1/$everything").json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["p1"]
    with server.client() as http:
        typed = http.get("/Patient/p1/$everything", params={"_type": "Observation"}).json()
    assert {e["resource"]["resourceType"] for e in typed["entry"]} == {"Observation"}


def test_everything_answers_unknown_patients_and_bad_parameters_precisely(
        server: ExportServer) -> None:
    with server.client() as http:
        assert http.get("/Patient/nobody/$everything").status_code == 404
        bad = http.get("/Patient/p1/$everything", params={"_type": "Spaceship"})
        assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["_type"]
        bad = http.get("/Patient/p1/$everything", params={"_since": "last week"})
        assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["_since"]



def test_a_study_restricted_client_gets_the_everything_and_lastn_of_its_study_only(
        server: ExportServer) -> None:
    with server.client("restricted") as http:  # studies {s1}: p1 is enrolled, p2 is not
        assert http.get("/Patient/p2/$everything").status_code == 404
        mine = http.get("/Patient/p1/$everything", params={"_count": "100"}).json()
        other = http.get("/Observation/$lastn", params={"patient": "Patient/p2"}).json()
    kinds = {e["resource"]["resourceType"] for e in mine["entry"]}
    assert {"Patient", "Observation", "ResearchSubject"} <= kinds
    assert other.get("entry", []) == []


def test_lastn_keeps_the_newest_max_per_code(server: ExportServer) -> None:
    with server.client("reader") as http:
        bundle = http.get("/Observation/$lastn", params={"patient": "Patient/p1",
                                                           "max": "2"}).json()
        one = http.get("/Observation/$lastn", params={"subject": "Patient/p1",
                                                        "code": "http://loinc.org|1988-5"})
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["a3", "a2", "b2", "b1"]
    assert [e["resource"]["id"] for e in one.json()["entry"]] == ["a3"]


def test_lastn_needs_a_patient_and_read_rights(server: ExportServer) -> None:
    with server.client() as http:
        missing = http.get("/Observation/$lastn", params={"code": "1988-5"})
        assert missing.status_code == 400
        assert missing.json()["issue"][0]["expression"] == ["patient"]
        bad = http.get("/Observation/$lastn", params={"patient": "p1", "max": "-1"})
        assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["max"]
    with server.client("patients-only") as http:
        assert http.get("/Observation/$lastn", params={"patient": "p1"}).status_code == 403


def test_the_capability_statement_declares_bulk_data_and_the_operations(
        server: ExportServer) -> None:
    with server.client() as http:
        statement = http.get("/metadata").json()
    assert statement["instantiates"] == [
        "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    (rest,) = statement["rest"]
    assert [op["name"] for op in rest["operation"]] == ["export"]
    by_type = {r["type"]: [op["name"] for op in r.get("operation", [])]
               for r in rest["resource"]}
    assert by_type["Patient"] == ["export", "everything"]
    assert by_type["Group"] == ["export"] and by_type["Observation"] == ["lastn"]
    with server.client() as http:  # and what is declared is served
        assert http.get("/Patient/p1/$everything").status_code == 200
        assert http.get("/Observation/$lastn", params={"patient": "p1"}).status_code == 200

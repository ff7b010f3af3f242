"""Bulk Data $export through a real server on both databases, driven with httpx as a Bulk
Data client drives it: kick-off, poll, download, cancel, 429, expiry, restart."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.store.cohort import group_id
from gateway.store.sql import SqlStore
from tests.api.export_support import (
    ExportServer,
    export_server,
    ndjson,
    observation,
    patient,
    poll,
    study,
    subject,
)


@pytest.fixture
def loaded(store: SqlStore) -> SqlStore:
    with store.transaction() as tx:
        tx.put_many([patient(f"p{n}") for n in range(6)]
                    + [observation(f"o{n}", f"p{n % 6}", "26464-8" if n % 2 else "1988-5")
                       for n in range(30)]
                    + [study("s1"), study("s2"), subject("s1", "p0"), subject("s1", "p1"),
                       subject("s2", "p1", "off-study")])
    return store


@pytest.fixture
def server(loaded: SqlStore, tmp_path: Path) -> Iterator[ExportServer]:
    with export_server(loaded, tmp_path) as served:
        yield served


def run_export(http: httpx.Client, path: str, **params: str | list[str]
               ) -> dict[str, object]:
    kick = http.get(path, params=params)
    assert kick.status_code == 202, kick.text
    done = poll(http, kick.headers["Content-Location"])
    assert done.status_code == 200, done.text
    manifest: dict[str, object] = done.json()
    return manifest


def download(http: httpx.Client, manifest: dict[str, object]) -> dict[str, list[dict]]:
    out = {}
    for item in manifest["output"]:  # type: ignore[attr-defined]
        answer = http.get(item["url"], headers={"Accept": "application/fhir+ndjson"})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/fhir+ndjson")
        out[item["type"]] = ndjson(answer.text)
        assert len(out[item["type"]]) == item["count"]
    return out


def test_a_system_export_is_kicked_off_polled_and_downloaded(server: ExportServer,
                                                             tmp_path: Path) -> None:
    with server.client() as http:
        manifest = run_export(http, "/$export", _type="Patient,Observation")
        files = download(http, manifest)
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert str(manifest["request"]).endswith("/fhir/$export?_type=Patient%2CObservation")
    assert manifest["transactionTime"]
    assert {k: len(v) for k, v in files.items()} == {"Patient": 6, "Observation": 30}
    assert {o["id"] for o in files["Observation"]} == {f"o{n}" for n in range(30)}
    written = list((tmp_path / "exports").rglob("*.ndjson"))
    assert written and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)


def test_an_anonymous_loopback_export_needs_no_access_token(server: ExportServer) -> None:
    with server.client("") as http:
        manifest = run_export(http, "/$export", _type="Patient")
    assert manifest["requiresAccessToken"] is False


def test_a_download_is_gzipped_when_the_client_accepts_it(server: ExportServer) -> None:
    with server.client() as http:
        manifest = run_export(http, "/$export", _type="Observation")
        url = manifest["output"][0]["url"]  # type: ignore[index]
        zipped = http.get(url, headers={"Accept-Encoding": "gzip"})
        plain = http.get(url, headers={"Accept-Encoding": "identity"})
    assert zipped.headers.get("content-encoding") == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.text == plain.text and len(ndjson(plain.text)) == 30


def test_since_type_filter_and_a_post_kick_off_narrow_the_export(
        server: ExportServer, loaded: SqlStore) -> None:
    time.sleep(0.01)
    with loaded.transaction() as tx:
        tx.put(observation("o-late", "p2"))
    late = loaded.read("Observation", "o-late")
    assert late is not None
    with server.client() as http:
        since = run_export(http, "/$export", _type="Observation",
                           _since=late["meta"]["lastUpdated"])
        assert [o["id"] for o in download(http, since)["Observation"]] == ["o-late"]
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Observation"},
            {"name": "_typeFilter", "valueString": "Observation?code=http://loinc.org|1988-5"}]}
        kick = http.post("/$export", json=body)
        assert kick.status_code == 202, kick.text
        manifest = poll(http, kick.headers["Content-Location"]).json()
        codes = {o["code"]["coding"][0]["code"] for o in download(http, manifest)["Observation"]}
    assert codes == {"1988-5"}


def test_the_patient_parameter_narrows_patient_and_group_exports(server: ExportServer) -> None:
    def posted(path: str, *patients: str) -> dict[str, list[dict]]:
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient,Observation"},
            *({"name": "patient", "valueReference": {"reference": f"Patient/{p}"}}
              for p in patients)]}
        with server.client() as http:
            kick = http.post(path, json=body)
            assert kick.status_code == 202, kick.text
            return download(http, poll(http, kick.headers["Content-Location"]).json())

    files = posted("/Patient/$export", "p3", "p4")
    assert {p["id"] for p in files["Patient"]} == {"p3", "p4"}
    assert {o["subject"]["reference"] for o in files["Observation"]} == {"Patient/p3",
                                                                        "Patient/p4"}
    cohort = posted(f"/Group/{group_id('s1')}/$export", "p1", "p4")  # p4 is no member
    assert [p["id"] for p in cohort["Patient"]] == ["p1"]


def test_a_group_export_takes_only_the_cohort_and_its_provenance_when_asked(
        server: ExportServer, loaded: SqlStore) -> None:
    with loaded.transaction() as tx:
        tx.put({"resourceType": "Provenance", "id": "prov-o0", "recorded":
                "2026-11-27T10:00:00Z", "target": [{"reference": "Observation/o0"}],
                "agent": [{"who": {"display": "lab"}}]})
        tx.put({"resourceType": "Provenance", "id": "prov-o2", "recorded":
                "2026-11-27T10:00:00Z", "target": [{"reference": "Observation/o2"}],
                "agent": [{"who": {"display": "lab"}}]})
    time.sleep(0.01)
    with loaded.transaction() as tx:  # a later message about o0
        tx.put({"resourceType": "Provenance", "id": "prov-o0-later", "recorded":
                "2026-11-28T10:00:00Z", "target": [{"reference": "Observation/o0"}],
                "agent": [{"who": {"display": "lab"}}]})
    cohort = f"/Group/{group_id('s1')}/$export"
    with server.client() as http:
        manifest = run_export(http, cohort, _type="Patient,Observation",
                              includeAssociatedData="RelevantProvenanceResources")
        files = download(http, manifest)
        latest = download(http, run_export(http, cohort, _type="Observation",
                                           includeAssociatedData="LatestProvenanceResources"))
    assert {p["id"] for p in files["Patient"]} == {"p0", "p1"}
    assert {o["subject"]["reference"] for o in files["Observation"]} == {"Patient/p0",
                                                                        "Patient/p1"}
    # o2 is p2's: not in the cohort
    assert [p["id"] for p in files["Provenance"]] == ["prov-o0", "prov-o0-later"]
    assert [p["id"] for p in latest["Provenance"]] == ["prov-o0-later"]


def test_type_filters_are_alternatives_and_stay_inside_the_cohort(
        server: ExportServer) -> None:
    with server.client() as http:
        manifest = run_export(http, f"/Group/{group_id('s1')}/$export", _type="Observation",
                              _typeFilter=["Observation?code=http://loinc.org|1988-5",
                                           "Observation?_id=o1,o3,o5,o7"])
        found = download(http, manifest)["Observation"]
    ids = sorted(o["id"] for o in found)
    # cohort: p0 and p1 (o0, o6, o12... and o1, o7, o13...); even ids have code 1988-5
    expected = sorted({f"o{n}" for n in range(30) if n % 6 in (0, 1)
                       and (n % 2 == 0 or n in (1, 3, 5, 7))})
    assert ids == expected and len(ids) == len(set(ids))


def test_a_group_written_through_the_api_is_exported_like_a_cohort(
        server: ExportServer) -> None:
    mine = {"resourceType": "Group", "id": "my-list", "type": "person", "actual": True,
            "member": [{"entity": {"reference": "Patient/p2"}},
                       {"entity": {"reference": "Patient/p3"}}]}
    with server.client() as http:
        assert http.put("/Group/my-list", json=mine).status_code == 201
        files = download(http, run_export(http, "/Group/my-list/$export",
                                          _type="Patient,Observation"))
        refused = http.get("/Group/my-list/$export", params={"pseudonymize": "study"})
    assert {p["id"] for p in files["Patient"]} == {"p2", "p3"}
    assert {o["subject"]["reference"] for o in files["Observation"]} == {"Patient/p2",
                                                                        "Patient/p3"}
    assert refused.status_code == 400  # not a study cohort: no study to key pseudonyms
    assert refused.json()["issue"][0]["expression"] == ["pseudonymize"]


def test_per_study_pseudonyms_are_stable_within_a_study_and_differ_across_studies(
        server: ExportServer) -> None:
    def exported(study_id: str) -> dict[str, list[dict]]:
        with server.client() as http:
            return download(http, run_export(http, f"/Group/{group_id(study_id)}/$export",
                                             _type="Patient,Observation",
                                             pseudonymize="study"))

    first, again, other = exported("s1"), exported("s1"), exported("s2")
    ids = sorted(p["id"] for p in first["Patient"])
    assert ids == sorted(p["id"] for p in again["Patient"])
    assert not {"p0", "p1"} & set(ids) and all(len(i) == 64 for i in ids)
    assert all("identifier" not in p for p in first["Patient"])
    assert {o["subject"]["reference"] for o in first["Observation"]} == {
        f"Patient/{i}" for i in ids}
    (p1_in_s2,) = [p["id"] for p in other["Patient"]]
    assert p1_in_s2 not in ids


def test_a_client_registered_for_study_pseudonyms_always_gets_them(
        server: ExportServer) -> None:
    with server.client("study-recipient") as http:
        assert http.get("/$export").status_code == 403
        assert http.get("/Patient/$export").status_code == 403
        manifest = run_export(http, f"/Group/{group_id('s1')}/$export", _type="Patient")
        ids = {p["id"] for p in download(http, manifest)["Patient"]}
    assert len(ids) == 2 and not ids & {"p0", "p1"}


@pytest.mark.parametrize(("path", "params", "headers", "status", "parameter"), [
    ("/$export", {}, {"Prefer": ""}, 400, "Prefer"),
    ("/$export", {"_type": "Observation,Spaceship"}, {}, 400, "_type"),
    ("/Patient/$export", {"_type": "Organization"}, {}, 400, "_type"),
    ("/$export", {"_since": "yesterday"}, {}, 400, "_since"),
    ("/$export", {"_since": "2026-01-01"}, {}, 400, "_since"),
    ("/$export", {"_typeFilter": "Observation?colour=red"}, {}, 400, "_typeFilter"),
    ("/$export", {"_typeFilter": "code=1988-5"}, {}, 400, "_typeFilter"),
    ("/$export", {"_outputFormat": "text/csv"}, {}, 400, "_outputFormat"),
    ("/$export", {"includeAssociatedData": "Everything"}, {}, 400, "includeAssociatedData"),
    ("/$export", {"pseudonymize": "study"}, {}, 400, "pseudonymize"),
    ("/$export", {"patient": "Patient/p1"}, {}, 400, "patient"),
    ("/Patient/$export", {"patient": "Observation/o1"}, {}, 400, "patient"),
    ("/Group/nope/$export", {}, {}, 404, None),
    ("/$export", {"_elements": "id"}, {}, 400, "_elements"),  # not supported here
    ("/$export", {"_typ": "Patient"}, {}, 400, "_typ"),  # a typo exports nothing
])
def test_bad_kick_offs_get_a_precise_outcome_and_start_nothing(
        server: ExportServer, path: str, params: dict[str, str], headers: dict[str, str],
        status: int, parameter: str | None) -> None:
    with server.client() as http:
        answer = http.get(path, params=params, headers=headers)
    assert answer.status_code == status, answer.text
    issue = answer.json()["issue"][0]
    assert issue["diagnostics"]
    if parameter:
        assert issue["expression"] == [parameter]
    assert server.manager.jobs.ids() == []


def test_an_unsupported_parameter_is_ignored_only_when_the_client_asks_for_leniency(
        server: ExportServer) -> None:
    """Bulk Data 2.0: an unsupported kick-off parameter is an error unless the client sends
    ``Prefer: handling=lenient`` (alone or beside ``respond-async``)."""
    with server.client() as http:
        strict = http.get("/$export", params={"_type": "Patient", "_until": "2026-01-01"})
        assert strict.status_code == 400, strict.text
        assert strict.json()["issue"][0]["expression"] == ["_until"]
        assert server.manager.jobs.ids() == []
        for prefer in ("respond-async, handling=lenient", "respond-async,handling=lenient"):
            kick = http.get("/$export", params={"_type": "Patient", "_until": "2026-01-01"},
                            headers={"Prefer": prefer})
            assert kick.status_code == 202, kick.text
            manifest = poll(http, kick.headers["Content-Location"]).json()
            assert [(o["type"], o["count"]) for o in manifest["output"]] == [("Patient", 6)]
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient"}, {"name": "_elements",
                                                          "valueString": "id"}]}
        refused = http.post("/$export", json=body)
    assert refused.status_code == 400 and refused.json()["issue"][0]["expression"] == [
        "_elements"]


def test_a_post_kick_off_without_parameters_is_refused_naming_the_body(
        server: ExportServer) -> None:
    with server.client() as http:
        answer = http.post("/$export", json={"resourceType": "Patient"})
        bad_value = http.post("/$export", json={"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueQuantity": {"value": 1}}]})
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["expression"] == ["resourceType"]
    assert bad_value.status_code == 400
    assert bad_value.json()["issue"][0]["expression"] == ["_type"]
    assert server.manager.jobs.ids() == []


def test_callers_without_the_export_scope_or_read_rights_are_refused(
        server: ExportServer) -> None:
    for who, params, status in (("reader", {}, 403),
                                ("patients-only", {"_type": "Observation"}, 403)):
        with server.client(who) as http:
            answer = http.get("/$export", params=params)
        assert answer.status_code == status, (who, answer.text)
        assert answer.json()["issue"][0]["code"] == "forbidden"
    with server.client("patients-only") as http:  # no _type: only what it may read
        manifest = run_export(http, "/$export")
    assert [o["type"] for o in manifest["output"]] == ["Patient"]  # type: ignore[index]
    assert server.manager.jobs.ids(statuses=["accepted", "in-progress"]) == []


def test_another_clients_job_and_files_are_not_found(server: ExportServer) -> None:
    with server.client() as http:
        kick = http.get("/$export", params={"_type": "Patient"})
        status_url = kick.headers["Content-Location"]
        manifest = poll(http, status_url).json()
    with server.client("other") as http:
        assert http.get(status_url).status_code == 404
        assert http.get(manifest["output"][0]["url"]).status_code == 404
        assert http.delete(status_url).status_code == 404
    with server.client() as http:
        assert http.get(status_url).status_code == 200


def test_delete_cancels_and_removes_the_files(server: ExportServer, tmp_path: Path) -> None:
    with server.client() as http:
        kick = http.get("/$export", params={"_type": "Observation"})
        status_url = kick.headers["Content-Location"]
        manifest = poll(http, status_url).json()
        cancelled = http.delete(status_url)
        assert cancelled.status_code == 202
        assert http.get(status_url).status_code == 404
        assert http.get(manifest["output"][0]["url"]).status_code == 404
    job = status_url.rsplit("/", 1)[1]
    assert not (tmp_path / "exports" / job).exists()


def test_delete_stops_a_running_export_and_removes_what_it_wrote(
        loaded: SqlStore, tmp_path: Path) -> None:
    loaded.bulk_put([observation(f"x{n:05d}", "p1") for n in range(3000)])
    # one row a page, a progress note after each: a job slow enough to be caught running
    with export_server(loaded, tmp_path, page=1, progress_every=0) as server, \
            server.client() as http:
        kick = http.get("/$export", params={"_type": "Observation"})
        status_url = kick.headers["Content-Location"]
        job = status_url.rsplit("/", 1)[1]
        running = http.get(status_url)
        assert running.status_code == 202 and running.headers["X-Progress"]
        deadline = time.monotonic() + 10  # the progress counts what is written
        while "written" not in running.headers.get("X-Progress", "") \
                and time.monotonic() < deadline:
            time.sleep(0.1)
            running = http.get(status_url)
        assert running.status_code == 202
        assert running.headers["X-Progress"].startswith("Observation (1 of 1 types): ")
        assert http.delete(status_url).status_code == 202
        assert http.get(status_url).status_code == 404
        deadline = time.monotonic() + 10
        while server.manager.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.manager.running() == 0  # the worker stopped
        assert not (tmp_path / "exports" / job).exists()
        assert server.manager.jobs.ids() == []


def test_too_many_concurrent_exports_get_429_with_retry_after(loaded: SqlStore,
                                                             tmp_path: Path) -> None:
    with export_server(loaded, tmp_path, max_active=1) as server:
        server.manager.jobs.add(_running_job("busy"))
        with server.client() as http:
            answer = http.get("/$export")
        assert answer.status_code == 429
        assert int(answer.headers["Retry-After"]) > 0
        assert answer.json()["issue"][0]["code"] == "throttled"


def test_finished_exports_expire_with_their_files(loaded: SqlStore, tmp_path: Path) -> None:
    with export_server(loaded, tmp_path, retention_hours=1 / 3600) as server:
        with server.client() as http:
            kick = http.get("/$export", params={"_type": "Patient"})
            status_url = kick.headers["Content-Location"]
            assert poll(http, status_url).status_code == 200
            time.sleep(1.2)
            assert http.get(status_url).status_code == 404
    assert list((tmp_path / "exports").iterdir()) == []


def test_a_restart_keeps_finished_jobs_and_fails_running_ones_clearly(
        loaded: SqlStore, tmp_path: Path) -> None:
    with export_server(loaded, tmp_path) as server, server.client() as http:
        kick = http.get("/$export", params={"_type": "Patient"})
        status_url = kick.headers["Content-Location"].rsplit("/fhir", 1)[1]
        manifest = poll(http, status_url).json()
        server.manager.jobs.add(_running_job("interrupted"))
    with export_server(loaded, tmp_path) as again, again.client() as http:
        after = http.get(status_url)
        assert after.status_code == 200 and after.json() == manifest
        url = manifest["output"][0]["url"].rsplit("/fhir", 1)[1]
        assert len(ndjson(http.get(url).text)) == 6
        failed = http.get("/$export-poll/interrupted")
        assert failed.status_code == 500
        assert "restarted" in failed.json()["issue"][0]["diagnostics"]


def _running_job(id: str) -> dict[str, object]:
    return {"id": id, "status": "in-progress", "kind": "system", "group_id": None,
            "request": "http://x/fhir/$export", "params": {"types": ["Patient"]},
            "client_id": "exporter", "principal": {}, "transaction_time":
            "2026-12-01T00:00:00.000Z", "created": "2026-12-01T00:00:00.000Z"}

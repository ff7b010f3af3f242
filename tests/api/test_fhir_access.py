"""Per-study and per-site access through every path of the FHIR API, on a real server and
both databases: a restricted client sees exactly what the rule (docs/security.md) lets it
see, and what is outside answers as if absent.

Data: tests/api/access_data.py (study-a: p1, p3; study-b: p2, p3; o5 is study-a's result
about p2; o3b is study-b's result about the shared p3).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import orjson
import pytest

from gateway.store.cohort import group_id

from .access_data import ref, tag, visible_keys
from .access_support import Served, all_pages, as_client, dataset_server, keys, serve_dataset
from .conftest import open_store


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    """One server per database for the read-only tests of this module."""
    yield from dataset_server(request, tmp_path_factory)


@pytest.fixture
def writable(database_url: str) -> Iterator[Served]:
    """A fresh server per test, for the tests that write."""
    yield from serve_dataset(open_store(database_url))


@pytest.fixture
def study_a(served: Served) -> Iterator[httpx.Client]:
    with as_client(served, studies="study-a") as http:
        yield http


def _search_all(http: httpx.Client, rtype: str) -> set[str]:
    return {k for page in all_pages(http, f"/{rtype}", {"_count": "100"}) for k in keys(page)}


# -- read, vread -------------------------------------------------------------------------------

def test_a_study_client_reads_its_patients_and_gets_404_for_another_studys(
        study_a: httpx.Client) -> None:
    assert study_a.get("/Patient/p1").status_code == 200
    assert study_a.get("/Patient/p3").status_code == 200  # shared with study-b
    for outside in ("/Patient/p2", "/Patient/p4", "/Observation/o3b", "/ResearchStudy/study-b",
                    "/ResearchSubject/rs-3b", "/Specimen/sp3b", "/Provenance/prov-mixed"):
        answer = study_a.get(outside)
        assert answer.status_code == 404, outside
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert "is not known" in answer.json()["issue"][0]["diagnostics"]


def test_a_missing_resource_and_a_hidden_one_answer_the_same(study_a: httpx.Client) -> None:
    hidden, missing = study_a.get("/Patient/p2"), study_a.get("/Patient/nobody")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]


def test_vread_of_a_hidden_resource_answers_404(study_a: httpx.Client) -> None:
    assert study_a.get("/Patient/p1/_history/1").status_code == 200
    assert study_a.get("/Patient/p2/_history/1").status_code == 404


def test_a_read_with_summary_is_shaped_on_the_restricted_path(study_a: httpx.Client) -> None:
    answer = study_a.get("/Patient/p1", params={"_elements": "gender"})
    assert answer.status_code == 200
    assert "birthDate" not in answer.json() and answer.json()["gender"] == "female"


def test_an_unrestricted_caller_reads_everything(served: Served) -> None:
    with as_client(served) as http:
        assert http.get("/Patient/p2").status_code == 200
        assert http.get("/Patient/p4").status_code == 200


def test_a_study_named_by_its_identifier_value_restricts_the_same_as_by_id(
        served: Served) -> None:
    with as_client(served, studies="2024-B") as by_identifier, \
            as_client(served, studies="study-b") as by_id:
        for rtype in ("Patient", "Observation", "ResearchSubject"):
            assert _search_all(by_identifier, rtype) == _search_all(by_id, rtype)


# -- search, counts, paging --------------------------------------------------------------------

@pytest.mark.parametrize("studies", ["study-a", "study-b", "study-a,study-b", "study-c", ""])
def test_type_searches_return_exactly_the_visible_resources(served: Served,
                                                            studies: str) -> None:
    names = [n for n in studies.split(",") if n]
    with as_client(served, studies=studies) as http:
        got = set().union(*(_search_all(http, t) for t in
                            ("Patient", "Observation", "Specimen", "ResearchStudy",
                             "ResearchSubject", "Provenance", "Organization", "Group")))
    assert got == visible_keys(names, None)


def test_post_search_is_restricted_like_get(study_a: httpx.Client) -> None:
    answer = study_a.post("/Observation/_search", data={"code": "718-7"})
    assert answer.status_code == 200
    assert set(keys(answer.json())) == {"Observation/o1", "Observation/o3a"}


def test_counts_and_totals_count_only_visible_resources(study_a: httpx.Client) -> None:
    count = study_a.get("/Observation", params={"_summary": "count"}).json()
    assert count["total"] == 4  # o1, o3, o3a, o5
    total = study_a.get("/Observation", params={"_total": "accurate", "_count": "1"}).json()
    assert total["total"] == 4 and len(keys(total)) == 1
    zero = study_a.get("/Patient", params={"_count": "0"}).json()
    assert zero["total"] == 2


def test_paging_walks_only_visible_resources_in_both_directions(
        study_a: httpx.Client) -> None:
    pages = all_pages(study_a, "/Observation", {"_count": "1", "_sort": "-date"})
    walked = [k for page in pages for k in keys(page)]
    assert walked == ["Observation/o5", "Observation/o3a", "Observation/o3", "Observation/o1"]
    last = pages[-1]
    previous = next(lnk["url"] for lnk in last["link"] if lnk["relation"] == "previous")
    assert keys(study_a.get(previous).json()) == ["Observation/o3"]


def test_a_cursor_from_an_unrestricted_page_does_not_widen_the_restriction(
        served: Served, study_a: httpx.Client) -> None:
    with as_client(served) as everyone:
        first = everyone.get("/Patient", params={"_count": "1"}).json()
    assert keys(first) == ["Patient/p1"]
    following = next(lnk["url"] for lnk in first["link"] if lnk["relation"] == "next")
    seen = {k for page in all_pages(study_a, following) for k in keys(page)}
    assert seen == {"Patient/p3"}  # after p1, as study-a sees the list


def test_paging_links_carry_only_visible_ids(study_a: httpx.Client) -> None:
    for page in all_pages(study_a, "/Patient", {"_count": "1"}):
        for link in page["link"]:
            cursor = httpx.URL(link["url"]).params.get("_cursor")
            if cursor:
                state = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
                assert f"Patient/{state['id']}" in visible_keys(["study-a"], None)


# -- includes, chains, _has --------------------------------------------------------------------

def test_include_leaves_out_hidden_targets(study_a: httpx.Client) -> None:
    bundle = study_a.get("/Observation", params={"_id": "o5",
                                                 "_include": "Observation:subject"}).json()
    assert keys(bundle, "match") == ["Observation/o5"]
    assert keys(bundle, "include") == []  # p2 is study-b's


def test_revinclude_and_iterate_leave_out_hidden_sources(study_a: httpx.Client) -> None:
    bundle = study_a.get("/Patient", params={
        "_id": "p3", "_revinclude": "Observation:subject",
        "_include:iterate": "Observation:specimen"}).json()
    assert set(keys(bundle, "include")) == {"Observation/o3", "Observation/o3a"}
    provenance = study_a.get("/Patient", params={"_id": "p3",
                                                 "_revinclude": "Provenance:target"}).json()
    assert keys(provenance, "include") == ["Provenance/prov-3a"]
    members = study_a.get("/Observation", params={
        "_id": "o5", "_include:iterate": "Observation:has-member"}).json()
    assert keys(members, "include") == []  # o2 is study-b's


def test_a_chain_through_a_hidden_resource_matches_nothing(served: Served,
                                                           study_a: httpx.Client) -> None:
    query = {"subject:Patient.birthdate": "1981-02-02"}  # p2's, known only to study-b
    with as_client(served) as everyone:
        assert keys(everyone.get("/Observation", params=query).json()) == \
            ["Observation/o2", "Observation/o5"]
    assert keys(study_a.get("/Observation", params=query).json()) == []
    assert keys(study_a.get("/Observation", params={"subject": "Patient/p2"}).json()) == \
        ["Observation/o5"]  # its own reference, not p2's data


def test_has_through_hidden_sources_matches_nothing(served: Served,
                                                    study_a: httpx.Client) -> None:
    query = {"_has:Observation:subject:code": "777-3"}  # only o3b, study-b's
    with as_client(served) as everyone:
        assert keys(everyone.get("/Patient", params=query).json()) == ["Patient/p3"]
    assert keys(study_a.get("/Patient", params=query).json()) == []
    visible = {"_has:Observation:subject:code": "718-7"}
    assert keys(study_a.get("/Patient", params=visible).json()) == ["Patient/p1", "Patient/p3"]


# -- history -----------------------------------------------------------------------------------

def test_history_at_every_level_shows_only_visible_resources(study_a: httpx.Client) -> None:
    assert study_a.get("/Patient/p1/_history").status_code == 200
    assert study_a.get("/Patient/p2/_history").status_code == 404
    typed = {k for page in all_pages(study_a, "/Observation/_history", {"_count": "2"})
             for k in keys(page)}
    assert typed == {k for k in visible_keys(["study-a"], None) if k.startswith("Observation/")}
    system = {k for page in all_pages(study_a, "/_history", {"_count": "5"}) for k in keys(page)}
    assert system == visible_keys(["study-a"], None)


# -- sites -------------------------------------------------------------------------------------

def test_a_site_client_sees_what_its_site_sent(served: Served) -> None:
    with as_client(served, sites="site1") as http:
        got = {k for t in ("Patient", "Observation", "Provenance") for k in _search_all(http, t)}
        assert http.get("/Patient/p2").status_code == 404
    assert got == {k for k in visible_keys(None, ["site1"])
                   if k.split("/")[0] in ("Patient", "Observation", "Provenance")}
    assert "Patient/p2" not in got and "Provenance/prov-1" in got


def test_studies_and_sites_together_must_both_allow(served: Served) -> None:
    with as_client(served, studies="study-b", sites="site1") as http:
        patients = _search_all(http, "Patient")
        observations = _search_all(http, "Observation")
    assert patients == {"Patient/p3"}  # p2 is study-b's but came from site2
    assert observations == {"Observation/o3b"}  # o3 came from no site (no Provenance)
    assert patients | observations == {k for k in visible_keys(["study-b"], ["site1"])
                                       if k.split("/")[0] in ("Patient", "Observation")}


# -- batch and transaction ---------------------------------------------------------------------

def test_batch_reads_answer_per_entry_as_the_client_may_see(study_a: httpx.Client) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/p1"}},
        {"request": {"method": "GET", "url": "Patient/p2"}},
        {"request": {"method": "GET", "url": "Patient/p2/_history/1"}},
        {"request": {"method": "GET", "url": "Observation?code=777-3"}}]}
    answer = study_a.post("", json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert answer.status_code == 200
    entries = answer.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "404", "404", "200"]
    assert keys(entries[3]["resource"]) == []


def _tx(http: httpx.Client, kind: str, *entries: dict) -> httpx.Response:
    return http.post("", json={"resourceType": "Bundle", "type": kind, "entry": list(entries)},
                     headers={"Content-Type": "application/fhir+json"})


def _put(resource: dict) -> dict:
    return {"resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def _post(resource: dict) -> dict:
    return {"resource": resource, "request": {"method": "POST",
                                              "url": resource["resourceType"]}}


def test_a_restricted_writer_cannot_write_outside_its_studies(writable: Served) -> None:
    outside = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": {"reference": "Patient/p2"}}
    inside = {**outside, "subject": {"reference": "Patient/p1"}}
    json_body = {"Content-Type": "application/fhir+json"}
    with as_client(writable, studies="study-a") as http:
        refused = _tx(http, "transaction", _post(inside), _post(outside))
        assert refused.status_code == 403, refused.text
        assert "entry 1" in refused.json()["issue"][0]["diagnostics"]
        everything = all_pages(http, "/Observation", {"_count": "100"})
        assert len({k for page in everything for k in keys(page)}) == 4  # rolled back, all
        batch = _tx(http, "batch", _post(inside), _post(outside),
                    _put({**inside, "id": "o1"}), _put({**inside, "id": "o2"}),
                    {"request": {"method": "DELETE", "url": "Patient/p2"}}).json()["entry"]
        assert [e["response"]["status"][:3] for e in batch] == ["201", "403", "200", "403",
                                                                "404"]
        assert http.put("/Observation/o2", json={**outside, "id": "o2"},
                        headers=json_body).status_code == 403
        assert http.delete("/Patient/p2").status_code == 404
        # a PUT or DELETE of an id that does not exist answers as for a hidden one
        assert http.put("/Observation/nobody", json={**inside, "id": "nobody"},
                        headers=json_body).status_code == 403
        assert http.delete("/Patient/nobody").status_code == 404
    with as_client(writable) as everyone:
        assert everyone.get("/Patient/p2").status_code == 200
        assert everyone.get("/Observation/o2").json()["subject"]["reference"] == "Patient/p2"
        assert everyone.get("/Observation/nobody").status_code == 404


def test_a_conditional_create_does_not_find_a_hidden_match(writable: Served) -> None:
    sample = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
              "subject": {"reference": "Patient/p1"}}
    with as_client(writable, studies="study-a") as http:
        created = http.post("/Observation", json=sample, headers={
            "Content-Type": "application/fhir+json", "If-None-Exist": "_id=o2"})
        assert created.status_code == 201  # o2 exists, but not for this client
        assert created.json()["id"] != "o2"


def test_a_study_client_sees_its_studys_cohort_group_and_no_group_written_by_a_client(
        writable: Served) -> None:
    """Only the hub's cohort Groups follow their study; a Group a client wrote, even one
    naming the study, may list anyone (here p2 of study-b) and stays hidden."""
    listed = {"resourceType": "Group", "id": "my-list", "type": "person", "actual": True,
              "extension": tag("study-a"), "member": [{"entity": ref("Patient/p2")}]}
    with as_client(writable) as http:
        assert http.put("/Group/my-list", json=listed, headers={
            "Content-Type": "application/fhir+json"}).status_code == 201
    with as_client(writable, studies="study-a") as http:
        found = keys(http.get("/Group", params={"research-study": "ResearchStudy/study-a"})
                     .json())
        assert found == [f"Group/{group_id('study-a')}"]
        assert http.get("/Group/my-list").status_code == 404
        assert http.get(f"/Group/{group_id('study-b')}").status_code == 404
    with as_client(writable, sites="site1") as http:  # no site sent a cohort
        assert keys(http.get("/Group").json()) == []

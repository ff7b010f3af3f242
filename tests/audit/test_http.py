"""Against a running server, on both databases: each kind of request becomes the right
AuditEvent; ``/fhir/AuditEvent`` searches and reads them, for the audit scope only."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest

from gateway.audit import AuditTrail
from gateway.store.audit import AuditLog, AuditQuery
from gateway.store.sql import SqlStore
from tests.api.conftest import open_store
from tests.audit.conftest import AUDITOR, KEY, READER, Audited, serve, summary

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}
FHIR = {"Content-Type": "application/fhir+json"}


def test_each_fhir_interaction_is_recorded_with_its_subtype_action_and_outcome(
        audited: Audited) -> None:
    with audited.client() as http:
        assert http.put("/fhir/Patient/p1", json=PATIENT, headers=FHIR).status_code == 201
        assert http.get("/fhir/Patient/p1").status_code == 200
        assert http.get("/fhir/Patient/p1/_history/1").status_code == 200
        assert http.get("/fhir/Patient", params={"gender": "female"}).status_code == 200
        assert http.post("/fhir/Patient", json={"resourceType": "Patient"},
                         headers=FHIR).status_code == 201
        assert http.get("/fhir/Patient/p1/_history").status_code == 200
        assert http.get("/fhir/Patient/_history").status_code == 200
        assert http.get("/fhir/metadata").status_code == 200
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Patient/p1"}}]}
        assert http.post("/fhir", json=bundle, headers=FHIR).status_code == 200
        assert http.delete("/fhir/Patient/p1").status_code in (200, 204)
        assert http.get("/fhir/Patient/p1").status_code == 410
        assert http.get("/fhir/Nothing/x").status_code == 404
    seen = [summary(e)[:3] + (summary(e)[4],) for e in audited.events()]
    assert seen == [
        ("update", "U", "0", ["Patient/p1"]),
        ("read", "R", "0", ["Patient/p1"]),
        ("vread", "R", "0", ["Patient/p1/_history/1"]),
        ("search-type", "E", "0", []),
        ("create", "C", "0", []),
        ("history-instance", "R", "0", ["Patient/p1"]),
        ("history-type", "R", "0", []),
        ("capabilities", "R", "0", []),
        ("batch", "E", "0", []),
        ("delete", "D", "0", ["Patient/p1"]),
        ("read", "R", "4", ["Patient/p1"]),
        ("read", "R", "4", ["Nothing/x"]),
    ]
    events = audited.events()
    assert {summary(e)[3] for e in events} == {"reader"}
    search = events[3]["entity"][0]
    assert search["role"]["code"] == "24"
    assert base64.b64decode(search["query"]) == b"/fhir/Patient?gender=female"


def test_refused_requests_and_token_requests_are_recorded(audited: Audited) -> None:
    with audited.client({"X-Test-Client": "-"}) as http:
        assert http.get("/fhir/Patient/p1").status_code == 401
    with audited.client() as http:
        assert http.get("/fhir/AuditEvent").status_code == 403
    with audited.client({}) as http:  # the token endpoint is called without a token
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert http.post("/auth/token", content="client=app-1&good=1",
                         headers=form).status_code == 200
        assert http.post("/auth/token", content="client=app-2&good=0",
                         headers=form).status_code == 401
    unauthenticated, forbidden, issued, refused = audited.events()
    assert summary(unauthenticated) == ("read", "R", "4", "unauthenticated", ["Patient/p1"])
    assert summary(forbidden)[:4] == ("search-type", "E", "4", "reader")
    assert issued["type"]["code"] == "110114" and summary(issued)[:4] == (
        "110122", "E", "0", "app-1")
    assert summary(refused)[:4] == ("110122", "E", "4", "app-2")


def test_the_audit_endpoint_is_for_the_audit_scope_only_and_read_only(
        audited: Audited) -> None:
    with audited.client() as http:
        denied = http.get("/fhir/AuditEvent")
        assert denied.status_code == 403
        assert denied.json()["issue"][0]["code"] == "forbidden"
        assert http.get("/fhir/AuditEvent/1").status_code == 403
    with audited.client(AUDITOR) as http:
        for method, path in (("POST", "/fhir/AuditEvent"), ("PUT", "/fhir/AuditEvent/1"),
                             ("DELETE", "/fhir/AuditEvent/1")):
            answer = http.request(method, path, json={"resourceType": "AuditEvent"})
            assert answer.status_code == 405, (method, path)
            assert answer.json()["resourceType"] == "OperationOutcome"
        assert audited.trail.flush()
        one = http.get("/fhir/AuditEvent/1")
        assert one.status_code == 200 and one.json()["id"] == "1"
        assert one.headers["cache-control"] == "no-store"
        assert http.get("/fhir/AuditEvent/999999").status_code == 404
        assert http.get("/fhir/AuditEvent/abc").status_code == 404


def _ids(bundle: dict[str, object]) -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"]]  # type: ignore[index,union-attr]


def test_the_search_filters_by_agent_entity_type_subtype_outcome_and_date(
        audited: Audited) -> None:
    with audited.client() as http:
        http.put("/fhir/Patient/p1", json=PATIENT, headers=FHIR)  # 1
        http.get("/fhir/Patient/p1")  # 2
        http.get("/fhir/Patient/p2")  # 3: 404
    with audited.client({**READER, "X-Test-Client": "other"}) as http:
        http.get("/fhir/Patient/p1")  # 4
    assert audited.trail.flush()
    with audited.client(AUDITOR) as http:
        def search(**params: str) -> list[str]:
            """Not the auditor's own searches, unless an agent is asked for."""
            answer = http.get("/fhir/AuditEvent", params={"agent": "reader,other", **params})
            assert answer.status_code == 200, answer.text
            return _ids(answer.json())

        assert search() == ["4", "3", "2", "1"]  # newest first
        assert search(_sort="date") == ["1", "2", "3", "4"]
        assert search(agent="other") == ["4"]
        assert audited.trail.flush()
        assert search(agent="auditor")[-1] == "5"  # its own first search
        assert search(agent="reader,other", entity="Patient/p1") == ["4", "2", "1"]
        assert search(entity="http://x/fhir/Patient/p2") == ["3"]
        assert search(subtype="read", outcome="4") == ["3"]
        assert search(subtype="http://hl7.org/fhir/restful-interaction|update") == ["1"]
        assert search(type="rest") == ["4", "3", "2", "1"]
        assert search(type="http://dicom.nema.org/resources/ontology/DCM|110114") == []
        first = http.get("/fhir/AuditEvent/1").json()["recorded"]
        assert search(date=f"le{first}") == ["1"]
        assert search(date=f"gt{first}", action="R") == ["4", "3", "2"]
        assert search(date="ge2000-01-01") == ["4", "3", "2", "1"]
        assert search(date="lt2000") == []
        page = http.get("/fhir/AuditEvent", params={"_count": "3", "agent": "reader,other"}
                        ).json()
        assert _ids(page) == ["4", "3", "2"]
        [after] = [link["url"] for link in page["link"] if link["relation"] == "next"]
        rest = http.get(after).json()
        assert _ids(rest) == ["1"]
        assert not [link for link in rest["link"] if link["relation"] == "next"]
        for bad in ({"date": "soon"}, {"date": "ap2026"}, {"name": "x"}, {"_count": "x"}):
            answer = http.get("/fhir/AuditEvent", params=bad)
            assert answer.status_code == 400, bad
            assert answer.json()["resourceType"] == "OperationOutcome"


@pytest.fixture
def stopped(database_url: str) -> Iterator[Audited]:
    """A trail whose writer has not started: the queue fills."""
    store = open_store(database_url)
    trail = AuditTrail(AuditLog(store), node="test-node", key=KEY, limit=2)
    yield from serve(store, trail)
    trail.stop()
    store.close()


def test_a_full_queue_refuses_requests_with_503_and_records_how_many(
        stopped: Audited) -> None:
    with stopped.client() as http:
        assert http.get("/fhir/Patient/a").status_code == 404
        assert http.get("/fhir/Patient/b").status_code == 404
        refused = http.get("/fhir/Patient/c")
        assert refused.status_code == 503
        assert "audit trail" in refused.json()["issue"][0]["diagnostics"]
        health = http.get("/healthz").json()
        assert health["audit"]["status"] == "full" and health["audit"]["refused"] == 1
        stopped.trail.start()
        assert stopped.trail.flush()
        assert http.get("/healthz").json()["audit"]["status"] == "ok"
    events = stopped.events()
    assert [summary(e)[4] for e in events[:2]] == [["Patient/a"], ["Patient/b"]]
    overflow = events[2]
    assert overflow["subtype"][0]["code"] == "audit-overflow" and overflow["outcome"] == "8"
    assert overflow["outcomeDesc"].startswith("1 requests refused with 503")


def test_events_wait_in_the_queue_while_the_store_is_down(database_url: str) -> None:
    store = open_store(database_url)
    down = SqlStore("postgresql://nobody@127.0.0.1:1/none")
    trail = AuditTrail(AuditLog(down), node="test-node", key=KEY).start()
    try:
        for audited in serve(store, trail):
            with audited.client() as http:
                assert http.get("/fhir/Patient/a").status_code == 404
                deadline = time.monotonic() + 10
                while http.get("/healthz").json()["audit"]["status"] != "unavailable":
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                health = http.get("/healthz").json()["audit"]
                assert health["pending"] >= 1 and "error" in health
                trail.log = AuditLog(store)  # the database is back
                assert trail.flush()
                assert http.get("/healthz").json()["audit"]["status"] == "ok"
            # the read, kept while the store was down; /healthz is not recorded
            assert [summary(e)[4] for e in audited.events()] == [["Patient/a"]]
    finally:
        trail.stop()
        down.close()
        store.close()


def test_a_post_search_takes_its_parameters_from_the_form_body(audited: Audited) -> None:
    with audited.client() as http:
        http.get("/fhir/Patient/p7")
    assert audited.trail.flush()
    with audited.client(AUDITOR) as http:
        answer = http.post("/fhir/AuditEvent/_search", content="entity=Patient/p7",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200
        assert [e["resource"]["id"] for e in answer.json()["entry"]] == ["1"]


def test_a_request_whose_event_cannot_be_built_is_still_on_the_trail(
        database_url: str) -> None:
    from gateway.audit.event import Facts

    store = open_store(database_url)
    trail = AuditTrail(AuditLog(store), node="n", key=KEY).start()
    try:
        trail.record(Facts("GET", "/fhir/Patient/p1", "", 200, "client-a",
                           when=float("nan")))  # no instant can be made of it
        assert trail.flush()
        rows, _ = AuditLog(store).search(AuditQuery())
    finally:
        trail.stop()
        store.close()
    [(_, content)] = rows
    assert b"audit-record-error" in content and b"client-a" in content


def test_stopping_the_trail_writes_what_is_queued_first(database_url: str) -> None:
    from gateway.audit.event import Facts

    store = open_store(database_url)
    trail = AuditTrail(AuditLog(store), node="n", key=KEY).start()
    try:
        for n in range(3):
            trail.record(Facts("GET", f"/fhir/Patient/p{n}", "", 200, "c", when=time.time()))
        trail.stop()
        assert AuditLog(store).count() == 3 and not trail.pending
    finally:
        store.close()

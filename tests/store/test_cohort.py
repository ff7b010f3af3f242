"""Study cohorts as Groups: membership follows the ResearchSubject lifecycle, on both
databases, through every hub write path (API/ingest ``put``, ``put_many``, the projector's
batch write, deletes), with versions and outbox rows like every resource."""

from __future__ import annotations

import orjson

from gateway.bus.base import Delivery
from gateway.bus.projector import apply_chunk
from gateway.store.cohort import group_id
from gateway.store.sql import SqlStore

STUDY = {"resourceType": "ResearchStudy", "id": "s1", "status": "active", "title": "CAR-T 01"}


def subject(id: str, patient: str, status: str, **extra: object) -> dict[str, object]:
    return {"resourceType": "ResearchSubject", "id": id, "status": status,
            "study": {"reference": "ResearchStudy/s1"},
            "individual": {"reference": f"Patient/{patient}"}, **extra}


def members(store: SqlStore) -> dict[str, tuple[bool, dict[str, str] | None]]:
    group = store.read("Group", group_id("s1"))
    assert group is not None
    return {m["entity"]["reference"]: (m["inactive"], m.get("period"))
            for m in group.get("member", [])}


def test_a_study_gets_an_empty_cohort_group_linked_by_characteristic_and_extension(
        store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(STUDY)
    group = store.read("Group", group_id("s1"))
    assert group is not None
    assert (group["type"], group["actual"], group["quantity"]) == ("person", True, 0)
    assert group["characteristic"][0]["valueReference"] == {"reference": "ResearchStudy/s1"}
    assert group["characteristic"][0]["exclude"] is False
    assert group["extension"][0]["valueReference"] == {"reference": "ResearchStudy/s1"}
    assert "member" not in group


def test_membership_follows_enrolment_off_study_and_delete_with_new_versions(
        store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(STUDY)
        tx.put_many([subject("r1", "p1", "on-study", period={"start": "2026-01-02"}),
                     subject("r2", "p2", "screening")])
    assert members(store) == {"Patient/p1": (False, {"start": "2026-01-02"})}
    with store.transaction() as tx:
        tx.put(subject("r1", "p1", "off-study",
                       period={"start": "2026-01-02", "end": "2026-05-01"}))
        tx.put(subject("r2", "p2", "on-study-intervention"))
    assert members(store) == {
        "Patient/p1": (True, {"start": "2026-01-02", "end": "2026-05-01"}),
        "Patient/p2": (False, None)}
    with store.transaction() as tx:
        tx.delete("ResearchSubject", "r2")
    assert members(store) == {"Patient/p1": (True, {"start": "2026-01-02",
                                                    "end": "2026-05-01"})}
    versions = store.history_versions("Group", group_id("s1"))
    assert [v.version_id for v in versions] == [3, 2, 1]  # one per transaction


def test_an_unchanged_subject_write_makes_no_new_group_version(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(STUDY)
        tx.put(subject("r1", "p1", "on-study"))
    with store.transaction() as tx:
        tx.put(subject("r1", "p1", "on-study"))
    group = store.read("Group", group_id("s1"))
    assert group is not None and group["meta"]["versionId"] == "1"


def test_the_projector_batch_write_keeps_the_cohort_current(store: SqlStore) -> None:
    def record(resource: dict[str, object], version: int) -> Delivery:
        stored = {**resource, "meta": {"versionId": str(version),
                                       "lastUpdated": "2026-11-27T10:00:00.000Z"}}
        return Delivery("t", 0, version, f"{resource['resourceType']}/{resource['id']}",
                        orjson.dumps(stored), {})

    with store.transaction() as tx:
        apply_chunk(tx, [record(STUDY, 1), record(subject("r1", "p1", "on-study"), 1),
                         record(subject("r1", "p1", "withdrawn"), 2)])
    assert members(store) == {"Patient/p1": (True, None)}


def test_group_changes_are_relayed_and_searchable_by_member_and_study(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(STUDY)
        tx.put(subject("r1", "p1", "on-study"))
    keys = [row.key for row in store.outbox_fetch()]
    assert keys.count(f"Group/{group_id('s1')}") == 1
    for params in ([("member", "Patient/p1")], [("research-study", "ResearchStudy/s1")],
                   [("_id", group_id("s1"))], [("type", "person"), ("actual", "true")]):
        found = store.search("Group", params).resources
        assert [g["id"] for g in found] == [group_id("s1")], params
    assert store.search("Group", [("member", "Patient/p9")]).resources == []


def test_opening_the_store_gives_every_study_its_cohort(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(STUDY)
        tx.put(subject("r1", "p1", "on-study"))
    with store.transaction() as tx:
        tx.delete("Group", group_id("s1"))  # as a database from before cohorts
    assert store.search("Group", []).resources == []
    store.migrate()  # what every start does
    assert members(store) == {"Patient/p1": (False, None)}
    store.migrate()
    group = store.read("Group", group_id("s1"))
    assert group is not None and group["meta"]["versionId"] == "3"  # no new version


def test_an_edge_store_keeps_no_cohorts(database_url: str) -> None:
    edge = SqlStore(database_url, edge=True)
    edge.migrate()
    try:
        with edge.transaction() as tx:
            tx.put(STUDY)
            tx.put(subject("r1", "p1", "on-study"))
        assert edge.read("Group", group_id("s1")) is None
    finally:
        edge.close()


def test_concurrent_enrolments_in_one_study_all_reach_the_cohort(store: SqlStore) -> None:
    import threading

    with store.transaction() as tx:
        tx.put(STUDY)
    start = threading.Barrier(4)

    def enrol(n: int) -> None:
        start.wait()
        store.retrying(lambda tx: tx.put(subject(f"r{n}", f"p{n}", "on-study")))

    threads = [threading.Thread(target=enrol, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(members(store)) == {f"Patient/p{n}" for n in range(4)}

"""The write path on both databases: versions, no-op writes, deletes, outbox, savepoints."""

from __future__ import annotations

import pytest

from gateway.errors import ConflictError, Gone, VersionConflict
from gateway.store.sql import SqlStore


def patient(pid: str = "p1", **extra: object) -> dict[str, object]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", **extra}


def test_a_first_put_creates_version_1_with_meta(store: SqlStore) -> None:
    with store.transaction() as tx:
        change = tx.put(patient(), source="urn:site:a")
    assert change.created and change.changed and change.version_id == 1
    stored = store.read("Patient", "p1")
    assert stored is not None
    assert stored["meta"]["versionId"] == "1"
    assert stored["meta"]["source"] == "urn:site:a"
    assert stored["meta"]["lastUpdated"].endswith("Z")
    assert len(stored["meta"]["lastUpdated"]) == len("2026-11-27T10:02:55.123Z")


def test_changed_content_makes_a_new_version_and_keeps_the_old_one(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(patient())
    with store.transaction() as tx:
        change = tx.put(patient(gender="male"))
    assert change.version_id == 2 and change.changed and not change.created
    assert store.read("Patient", "p1")["gender"] == "male"  # type: ignore[index]
    assert store.vread("Patient", "p1", 1)["gender"] == "female"  # type: ignore[index]
    assert [r["meta"]["versionId"] for r in store.history("Patient", "p1")] == ["2", "1"]


def test_identical_content_is_a_no_op_without_outbox_row(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(patient(meta={"tag": [{"code": "x"}]}))
    first = store.read("Patient", "p1")
    assert first is not None
    resent = {**first, "meta": {**first["meta"], "versionId": "7",
                                "lastUpdated": "2020-01-01T00:00:00Z"}}
    with store.transaction() as tx:
        change = tx.put(resent)
    assert not change.changed and change.version_id == 1
    assert change.resource == first
    assert store.outbox_pending() == 1


def test_a_changed_meta_tag_is_a_change(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(patient())
        change = tx.put(patient(meta={"security": [{"code": "PSEUDED"}]}))
    assert change.changed and change.version_id == 2
    assert store.read("Patient", "p1")["meta"]["security"] == [{"code": "PSEUDED"}]  # type: ignore[index]


def test_if_match_with_another_version_raises_a_version_conflict(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(patient())
    with pytest.raises(VersionConflict) as info, store.transaction() as tx:
        tx.put(patient(gender="male"), if_match=3)
    assert (info.value.expected, info.value.actual) == (3, 1)
    assert isinstance(info.value, ConflictError)
    with store.transaction() as tx:
        assert tx.put(patient(gender="male"), if_match=1).version_id == 2


def test_delete_writes_a_tombstone_version_and_read_says_gone(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(patient())
    with store.transaction() as tx:
        change = tx.delete("Patient", "p1")
        assert tx.get("Patient", "p1") is None
    assert change.deleted and change.changed and change.version_id == 2
    with pytest.raises(Gone):
        store.read("Patient", "p1")
    with pytest.raises(Gone):
        store.vread("Patient", "p1", 2)
    versions = store.history_versions("Patient", "p1")
    assert [(v.version_id, v.deleted) for v in versions] == [(2, True), (1, False)]
    rows = store.outbox_fetch()
    assert [(r.version_id, r.payload is None) for r in rows] == [(1, False), (2, True)]


def test_deleting_a_missing_or_deleted_resource_is_a_no_op(store: SqlStore) -> None:
    with store.transaction() as tx:
        assert not tx.delete("Patient", "nope").changed
        tx.put(patient())
        tx.delete("Patient", "p1")
        again = tx.delete("Patient", "p1")
    assert not again.changed and again.version_id == 2
    assert store.outbox_pending() == 2


def test_a_put_after_delete_recreates_with_the_next_version(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(patient())
        tx.delete("Patient", "p1")
        change = tx.put(patient())
    assert change.created and change.version_id == 3
    assert store.read("Patient", "p1")["meta"]["versionId"] == "3"  # type: ignore[index]


def test_outbox_rows_come_in_commit_order_with_key_payload_and_headers(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(patient("a"), headers={"site": "s1"})
        tx.put({"resourceType": "Organization", "id": "o", "name": "X"})
    with store.transaction() as tx:
        tx.put(patient("a", gender="male"))
    rows = store.outbox_fetch()
    assert [(r.key, r.version_id) for r in rows] == [
        ("Patient/a", 1), ("Organization/o", 1), ("Patient/a", 2)]
    assert rows[0].headers == {"site": "s1"} and rows[2].headers == {}
    assert b'"gender":"male"' in (rows[2].payload or b"")
    assert rows[0].seq < rows[1].seq < rows[2].seq
    store.outbox_mark_published([rows[0].seq, rows[1].seq])
    assert [r.seq for r in store.outbox_fetch()] == [rows[2].seq]
    assert store.outbox_pending() == 1


def test_a_failed_savepoint_rolls_back_only_its_own_writes(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(patient("kept"))
        with pytest.raises(RuntimeError), tx.savepoint():
            tx.put(patient("lost"))
            tx.link_put("k-lost", "ps-lost")
            raise RuntimeError("mapping failed")
        with tx.savepoint():
            tx.put(patient("also-kept"))
    assert store.read("Patient", "kept") is not None
    assert store.read("Patient", "also-kept") is not None
    assert store.read("Patient", "lost") is None
    assert [r.key for r in store.outbox_fetch()] == ["Patient/kept", "Patient/also-kept"]
    with store.transaction() as tx:
        assert tx.link_get("k-lost") is None


def test_an_exception_rolls_back_the_whole_transaction(store: SqlStore) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.put(patient())
        raise RuntimeError("boom")
    assert store.read("Patient", "p1") is None
    assert store.outbox_pending() == 0


def test_apply_version_stores_the_given_version_once(store: SqlStore) -> None:
    v3 = patient(meta={"versionId": "3", "lastUpdated": "2026-01-02T03:04:05.678+01:00",
                       "source": "urn:edge:x"})
    with store.transaction() as tx:
        first = tx.apply_version(v3)
        same = tx.apply_version(v3)
        older = tx.apply_version(patient(gender="male", meta={
            "versionId": "2", "lastUpdated": "2026-01-01T00:00:00Z"}))
    assert first.changed and first.version_id == 3
    assert not same.changed and not older.changed
    stored = store.read("Patient", "p1")
    assert stored is not None and stored["gender"] == "female"
    assert stored["meta"]["versionId"] == "3"
    assert stored["meta"]["lastUpdated"] == "2026-01-02T02:04:05.678Z"
    assert store.outbox_pending() == 0


def test_apply_delete_tombstones_only_newer_versions(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.apply_version(patient(meta={"versionId": "2", "lastUpdated": "2026-01-01T00:00:00Z"}))
        assert not tx.apply_delete("Patient", "p1", version_id=2).changed
        assert tx.apply_delete("Patient", "p1").changed
    with pytest.raises(Gone):
        store.read("Patient", "p1")


def test_the_inbox_keeps_one_message_per_sender_and_control_id(store: SqlStore) -> None:
    from gateway.store.base import InboxRecord

    record = InboxRecord("LAB", "HOSP_A", "MSG1", b"MSH|^~\\&|...", "2026-11-27T10:00:00Z",
                         site="hosp-a", message_type="ORU^R01")
    with store.transaction() as tx:
        rid = tx.inbox_add(record)
        with pytest.raises(ConflictError):
            tx.inbox_add(InboxRecord("LAB", "HOSP_A", "MSG1", b"other", "2026-11-27T10:00:01Z"))
        tx.put(patient())  # the transaction is still usable
        record.status, record.ack = "processed", b"MSA|AA|MSG1"
        record.report = {"resourceType": "OperationOutcome", "issue": []}
        record.resource_refs = ["Patient/p1/_history/1"]
        tx.inbox_update(record)
    found = store.inbox_find("LAB", "HOSP_A", "MSG1")
    assert found is not None and found.id == rid
    assert (found.status, found.ack, found.raw) == ("processed", b"MSA|AA|MSG1", record.raw)
    assert found.resource_refs == ["Patient/p1/_history/1"] and found.report is not None
    assert store.inbox_get(rid) == found
    assert store.inbox_list(status="processed") == [found]
    assert store.inbox_list(status="error") == []
    assert list(store.inbox_iter(site="hosp-a")) == [found]
    assert store.read("Patient", "p1") is not None


def test_pseudonym_links_are_kept_and_never_overwritten(store: SqlStore) -> None:
    with store.transaction() as tx:
        assert tx.link_get("h1") is None
        tx.link_put("h1", "ps1")
        tx.link_put("h1", "ps1")
        with pytest.raises(ConflictError):
            tx.link_put("h1", "ps2")
    with store.transaction() as tx:
        assert tx.link_get("h1") == "ps1"


def test_migrate_twice_is_harmless(store: SqlStore) -> None:
    store.migrate()
    with store.transaction() as tx:
        tx.put(patient())
    assert store.read("Patient", "p1") is not None


def test_bulk_put_stores_new_and_versions_existing_resources(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(patient("p0"))
    resources = [patient(f"p{i}") for i in range(5)] + [patient("p0", gender="male")]
    assert store.bulk_put(resources, chunk=2) == 4
    assert store.read("Patient", "p4")["meta"]["versionId"] == "1"  # type: ignore[index]
    assert store.read("Patient", "p0")["gender"] == "male"  # type: ignore[index]
    assert store.read("Patient", "p0")["meta"]["versionId"] == "2"  # type: ignore[index]


def stored_index(store: SqlStore, rtype: str, rid: str) -> dict[str, list[tuple[object, ...]]]:
    from sqlalchemy import select

    from gateway.store import schema

    out = {}
    with store.engine.connect() as conn:
        for kind, table in schema.INDEX_TABLES.items():
            query = select(*[c for c in table.c if c.name not in ("res_type", "res_id")]).where(
                table.c.res_type == rtype, table.c.res_id == rid)
            out[kind] = sorted(tuple(map(str, row)) for row in conn.execute(query))
    return out


def expected_index(resource: dict[str, object]) -> dict[str, list[tuple[object, ...]]]:
    from gateway.store import schema
    from gateway.store.search.index import index_rows

    rows = index_rows(resource)
    return {kind: sorted(tuple(str(row[c.name]) for c in table.c
                               if c.name not in ("res_type", "res_id"))
                         for row in rows.get(kind, []))
            for kind, table in schema.INDEX_TABLES.items()}


def test_index_rows_follow_every_update_and_delete(store: SqlStore) -> None:
    o = {"resourceType": "Observation", "id": "o", "status": "preliminary",
         "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
         "effectiveDateTime": "2024-01-01T10:00:00Z"}
    steps = [o, {**o, "status": "final"}, {**o, "status": "final", "meta": {"tag": [
        {"code": "t"}]}}, {**o, "status": "final", "effectiveDateTime": "2024-02-01"}]
    for step in steps:
        with store.transaction() as tx:
            tx.put(step)
        current = store.read("Observation", "o")
        assert current is not None
        assert stored_index(store, "Observation", "o") == expected_index(current)
    with store.transaction() as tx:
        tx.delete("Observation", "o")
    assert all(rows == [] for rows in stored_index(store, "Observation", "o").values())


def test_reindex_rebuilds_lost_index_rows(store: SqlStore) -> None:
    from sqlalchemy import delete

    from gateway.store import schema

    with store.transaction() as tx:
        for i in range(7):
            tx.put(patient(f"p{i}", identifier=[{"system": "urn:x", "value": f"v{i}"}]))
        tx.delete("Patient", "p6")
    with store.engine.begin() as conn:
        conn.execute(delete(schema.idx_token))
    assert store.search("Patient", [("identifier", "urn:x|v3")]).resources == []
    assert store.reindex("Patient", page=4) == 6
    assert [r["id"] for r in store.search("Patient", [("identifier", "urn:x|v3")]).resources
            ] == ["p3"]
    assert store.search("Patient", [("identifier", "urn:x|v6")]).resources == []

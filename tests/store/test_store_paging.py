"""Sorting, keyset cursors (also while data is written), includes, history, concurrency."""

from __future__ import annotations

import base64
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from gateway.errors import SearchError
from gateway.store.sql import SqlStore


def obs(oid: str, when: str | None, status: str = "final", subject: str = "Patient/p1",
        **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": status,
                           "code": {"coding": [{"system": "http://loinc.org", "code": "x"}]},
                           "subject": {"reference": subject}, **extra}
    if when:
        out["effectiveDateTime"] = when
    return out


def page_ids(result: Any) -> list[str]:
    return [r["id"] for r in result.resources]


def test_sort_by_date_and_status_both_directions_missing_last(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(obs("a", "2024-01-03", "final"))
        tx.put(obs("b", "2024-01-01", "amended"))
        tx.put(obs("c", None, "final"))
        tx.put(obs("d", "2024-01-02", "final"))
    assert page_ids(store.search("Observation", [("_sort", "date")])) == ["b", "d", "a", "c"]
    assert page_ids(store.search("Observation", [("_sort", "-date")])) == ["a", "d", "b", "c"]
    assert page_ids(store.search("Observation", [("_sort", "status,-date")])) == [
        "b", "a", "d", "c"]
    assert page_ids(store.search("Observation", [("_sort", "-_id")])) == ["d", "c", "b", "a"]
    assert page_ids(store.search("Observation", [])) == ["a", "b", "c", "d"]
    assert page_ids(store.search("Observation", [("date", "ge2024-01-02"), ("code", "x"),
                                                 ("_sort", "-date")])) == ["a", "d"]
    assert page_ids(store.search("Observation", [("date:missing", "true"),
                                                 ("_sort", "date")])) == ["c"]


def test_cursors_walk_forward_and_back_without_gaps(store: SqlStore) -> None:
    with store.transaction() as tx:
        for i in range(10):
            tx.put(obs(f"o{i}", f"2024-01-{10 + i % 3}"))
    query = [("_sort", "-date"), ("_count", "4")]
    first = store.search("Observation", query)
    assert first.prev_cursor is None and first.next_cursor is not None
    second = store.search("Observation", [*query, ("_cursor", first.next_cursor)])
    third = store.search("Observation", [*query, ("_cursor", second.next_cursor or "")])
    assert third.next_cursor is None and len(third.resources) == 2
    walked = page_ids(first) + page_ids(second) + page_ids(third)
    assert sorted(walked) == [f"o{i}" for i in range(10)]  # each exactly once
    back = store.search("Observation", [*query, ("_cursor", second.prev_cursor or "")])
    assert page_ids(back) == page_ids(first)
    assert ("_cursor", first.next_cursor) not in second.applied
    forged = base64.urlsafe_b64encode(orjson.dumps(
        {"d": "n", "v": ["x' OR 1=1"], "id": "o1", "s": "-date"})).decode()
    with pytest.raises(SearchError):
        store.search("Observation", [*query, ("_cursor", forged)], strict=True)
    lenient = store.search("Observation", [*query, ("_cursor", "not-a-cursor")])
    assert page_ids(lenient) == page_ids(first) and lenient.issues


def test_paging_while_writing_neither_skips_nor_repeats_existing_rows(store: SqlStore) -> None:
    with store.transaction() as tx:
        for i in range(0, 40, 2):
            tx.put(obs(f"o{i:02d}", "2024-05-01"))
    before = {f"o{i:02d}" for i in range(0, 40, 2)}
    seen: list[str] = []
    cursor, written = None, 0
    while True:
        params = [("date", "2024-05"), ("_count", "6")]
        result = store.search("Observation", params + ([("_cursor", cursor)] if cursor else []))
        seen.extend(page_ids(result))
        with store.transaction() as tx:  # new rows that sort before, inside and after
            for oid in (f"o{written:02d}x", f"o{written + 1:02d}", f"a{written}", f"z{written}"):
                tx.put(obs(oid, "2024-05-02"))
            written += 2
        cursor = result.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


def test_include_and_revinclude_with_iterate(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put({"resourceType": "Patient", "id": "p1"})
        tx.put({"resourceType": "Specimen", "id": "root", "subject": {"reference": "Patient/p1"}})
        tx.put({"resourceType": "Specimen", "id": "child", "parent": [{"reference":
                                                                       "Specimen/root"}]})
        tx.put(obs("o1", "2024-01-01", specimen={"reference": "Specimen/child"}))
        tx.put({"resourceType": "Provenance", "id": "prov1", "recorded": "2024-01-01T00:00:00Z",
                "target": [{"reference": "Observation/o1"}], "agent": [
                    {"who": {"reference": "Organization/org1"}}]})
    plain = store.search("Observation", [("_include", "Observation:specimen"),
                                         ("_include", "Specimen:parent")])
    assert sorted(r["id"] for r in plain.included) == ["child"]  # Specimen:parent not iterated
    iterated = store.search("Observation", [("_include", "Observation:specimen"),
                                            ("_include:iterate", "Specimen:parent"),
                                            ("_include:iterate", "Specimen:subject")])
    assert sorted(r["id"] for r in iterated.included) == ["child", "p1", "root"]
    rev = store.search("Patient", [("_id", "p1"), ("_revinclude", "Observation:subject"),
                                   ("_revinclude:iterate", "Provenance:target")])
    assert sorted(r["id"] for r in rev.included) == ["o1", "prov1"]
    star = store.search("Observation", [("_include", "*")])
    assert sorted(r["id"] for r in star.included) == ["child", "p1"]


def test_history_of_an_instance_a_type_and_the_system(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put(obs("o1", "2024-01-01"))
        tx.put({"resourceType": "Patient", "id": "p1"})
    first = store.history("Observation", "o1")[0]["meta"]["lastUpdated"]
    with store.transaction() as tx:
        tx.put(obs("o1", "2024-01-02"))
        tx.delete("Patient", "p1")
    assert [r["meta"]["versionId"] for r in store.history("Observation", "o1")] == ["2", "1"]
    assert len(store.history("Observation", None)) == 2
    everything = store.history_versions(None, None)
    assert [(v.resource_type, v.version_id, v.deleted) for v in everything][:2] in (
        [("Patient", 2, True), ("Observation", 2, False)],
        [("Observation", 2, False), ("Patient", 2, True)])
    assert len(everything) == 4
    assert len(store.history(None, None, count=3)) == 3
    since = store.history(None, None, since=first)
    assert len(since) >= 2 and all(r["meta"]["lastUpdated"] >= first for r in since)


def test_parallel_conditional_creates_make_exactly_one_resource(store: SqlStore) -> None:
    start = threading.Barrier(6)

    def conditional_create(tx: Any) -> bool:
        tx.lock_key("Patient?identifier=urn:pseudo|PS-9")
        if tx.search("Patient", [("identifier", "urn:pseudo|PS-9")]).resources:
            return False
        tx.put({"resourceType": "Patient", "id": uuid.uuid4().hex,
                "identifier": [{"system": "urn:pseudo", "value": "PS-9"}]})
        return True

    def worker(_: int) -> bool:
        start.wait()
        return store.retrying(conditional_create)

    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(worker, range(6)))
    assert created.count(True) == 1
    assert len(store.search("Patient", [("identifier", "urn:pseudo|PS-9")]).resources) == 1


def test_parallel_puts_of_one_new_id_each_get_their_own_version(store: SqlStore) -> None:
    start = threading.Barrier(5)

    def worker(i: int) -> int:
        start.wait()
        return store.retrying(lambda tx: tx.put(obs("same", f"2024-01-0{i + 1}")).version_id)

    with ThreadPoolExecutor(5) as pool:
        versions = sorted(pool.map(worker, range(5)))
    assert versions == [1, 2, 3, 4, 5]
    assert store.outbox_pending() == 5


def test_paging_a_date_sort_crosses_from_dated_to_undated_rows_both_ways(
        store: SqlStore) -> None:
    with store.transaction() as tx:
        for i in range(7):
            tx.put(obs(f"d{i}", f"2024-02-0{1 + i % 3}"))  # ties on the date
        for i in range(4):
            tx.put(obs(f"n{i}", None))
    for direction in ("date", "-date"):
        descending = direction.startswith("-")
        query = [("_sort", direction), ("_count", "3")]
        results = [store.search("Observation", query)]
        while results[-1].next_cursor is not None:
            results.append(store.search("Observation",
                                        [*query, ("_cursor", results[-1].next_cursor)]))
        pages = [page_ids(r) for r in results]
        walked = [oid for page in pages for oid in page]
        assert sorted(walked) == sorted([f"d{i}" for i in range(7)] + [f"n{i}" for i in range(4)])
        assert walked[-4:] == sorted(walked[-4:], reverse=descending)  # undated last, by id
        assert all(oid.startswith("n") for oid in walked[-4:])
        dated = [store.read("Observation", oid) for oid in walked[:7]]
        when = [(r or {})["effectiveDateTime"] for r in dated]
        assert when == sorted(when, reverse=descending)
        back = [results[-1]]  # and back from the last page, page by page
        while back[-1].prev_cursor is not None:
            back.append(store.search("Observation", [*query, ("_cursor", back[-1].prev_cursor)]))
        assert [page_ids(r) for r in reversed(back)] == pages


def test_query_plans_with_and_without_a_driving_filter_agree(
        store: SqlStore, monkeypatch: Any) -> None:
    from gateway.store.search import order as order_module

    with store.transaction() as tx:
        for i in range(12):
            tx.put(obs(f"o{i:02d}", f"2024-03-{1 + i % 4:02d}" if i % 5 else None,
                       "final" if i % 3 else "amended", subject=f"Patient/p{i % 2}"))
    searches = [[("status", "final")], [("status", "final"), ("_sort", "-date")],
                [("status", "final,amended"), ("date", "ge2024-03-02"), ("_sort", "date")],
                [("status:not", "amended"), ("_sort", "-_lastUpdated")],
                [("code", "x"), ("subject", "Patient/p1"), ("_sort", "-date")]]

    def walk(params: list[tuple[str, str]]) -> list[str]:
        seen, cursor = [], None
        while True:
            page = store.search("Observation", [*params, ("_count", "4")]
                                + ([("_cursor", cursor)] if cursor else []))
            seen += page_ids(page)
            cursor = page.next_cursor
            if cursor is None:
                return seen

    driven = [walk(params) for params in searches]
    monkeypatch.setattr(order_module, "DRIVER_MAX", 0)
    monkeypatch.setattr(order_module, "DRIVER_MAX_SORTED", 0)
    assert [walk(params) for params in searches] == driven
    assert all(len(ids) == len(set(ids)) for ids in driven)
    assert len(driven[0]) == 8 and len(driven[3]) == 8

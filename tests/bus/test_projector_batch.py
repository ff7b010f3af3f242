"""The projector's chunk write (``apply_chunk``) stores exactly what ``apply_version``
one by one stores: history, current rows and search index rows, on both databases."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.bus.base import Delivery
from gateway.bus.projector import apply_chunk, apply_delivery, apply_segments, prepare_chunk
from gateway.store import schema as s
from gateway.store.sql import SqlStore
from tests.bus.busutil import observation, patient, versions
from tests.conftest import drop_pg_database, make_pg_database
from tests.support import migrated_store


def version(resource: dict[str, Any], n: int, second: int = 0) -> dict[str, Any]:
    return {**resource, "meta": {"versionId": str(n), "source": "urn:edge",
                                 "lastUpdated": f"2026-11-27T10:00:{second:02d}+01:00"}}


def deliveries() -> list[Delivery]:
    """Versions in log order with redeliveries, an older version after a newer one, several
    versions of one key in one batch, a delete and a re-creation."""
    rng = random.Random(7)
    out: list[Delivery] = []
    for n in (1, 2, 3):
        for i in range(30):
            res = version(observation(i, float(n * 10 + i)) if i % 2 else patient(i, ("female",
                          "male", "other")[n - 1]), n, n)
            out.append(Delivery("t", 0, 0, f"{res['resourceType']}/{res['id']}",
                                _dumps(res), {"version-id": str(n)}))
    out += rng.sample(out, 20)  # redelivered, in any order (older after newer too)
    out.append(Delivery("t", 0, 0, "Observation/o1", None, {"version-id": "4"}))
    out.append(Delivery("t", 0, 0, "Observation/o1",
                        _dumps(version(observation(1, 99.0), 5, 9)), {"version-id": "5"}))
    return out


def _dumps(resource: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(resource)


def index_contents(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    with store.engine.connect() as conn:
        return {kind: sorted(tuple(str(v) for v in row)
                             for row in conn.execute(select(table)))
                for kind, table in s.INDEX_TABLES.items()} | {
            "resource": sorted(tuple(str(v) for v in row)
                               for row in conn.execute(select(s.resource)))}


@pytest.fixture
def two_stores(database_url: str, tmp_path: Path, pg_server: str) -> Iterator[tuple[SqlStore,
                                                                                    SqlStore]]:
    if database_url.startswith("sqlite"):
        other, cleanup = f"sqlite:///{tmp_path / 'other.db'}", None
    else:
        other, cleanup = make_pg_database(pg_server)
    stores = (SqlStore(database_url), SqlStore(other))
    for store in stores:
        store.migrate()
    yield stores
    for store in stores:
        store.close()
    if cleanup:
        drop_pg_database(pg_server, cleanup)


def test_the_batch_write_stores_what_one_by_one_stores(
        two_stores: tuple[SqlStore, SqlStore]) -> None:
    one_by_one, batched = two_stores
    records = deliveries()
    with one_by_one.transaction() as tx:
        expected_changed = sum(apply_delivery(tx, r) for r in records)
    changed = 0
    for start in range(0, len(records), 25):  # several batches, as fetched from the bus
        with batched.transaction() as tx:
            changed += apply_chunk(tx, records[start:start + 25])
    assert changed == expected_changed == 30 * 3 + 2
    assert versions(batched) == versions(one_by_one)
    assert index_contents(batched) == index_contents(one_by_one)
    assert batched.read("Observation", "o1")["valueQuantity"]["value"] == 99.0  # type: ignore[index]


def test_the_projectors_prepared_batches_store_what_one_by_one_stores(
        two_stores: tuple[SqlStore, SqlStore]) -> None:
    """The projector's own path: batches prepared before the transaction (on PostgreSQL as
    COPY data), then written; the same versions, current rows and index rows."""
    one_by_one, batched = two_stores
    records = deliveries()
    with one_by_one.transaction() as tx:
        expected_changed = sum(apply_delivery(tx, r) for r in records)
    changed = 0
    for start in range(0, len(records), 25):
        chunk = prepare_chunk(batched, records[start:start + 25])
        assert chunk.segments is not None
        with batched.transaction() as tx:
            changed += apply_segments(tx, chunk.segments)
    assert changed == expected_changed
    assert versions(batched) == versions(one_by_one)
    assert index_contents(batched) == index_contents(one_by_one)


def test_an_old_version_that_cannot_be_indexed_is_a_no_op_and_a_new_one_raises(
        store: SqlStore) -> None:
    """As with ``apply_version``: a version not newer than the stored one is not written,
    whatever it holds; a new one the index cannot hold fails the transaction."""
    good = version(observation(1, 1.0), 2)
    bad = {**observation(1, 2.0), "code": {"coding": [{"code": {"not": "a code"}}]}}
    with store.transaction() as tx:
        assert apply_chunk(tx, [Delivery("t", 0, 0, "Observation/o1", _dumps(good), {})]) == 1
    old = Delivery("t", 0, 1, "Observation/o1", _dumps(version(bad, 1)), {})
    new = Delivery("t", 0, 2, "Observation/o1", _dumps(version(bad, 3)), {})
    for prepared in (prepare_chunk(store, [old]), prepare_chunk(store, [old, old])):
        with store.transaction() as tx:
            assert apply_segments(tx, prepared.segments or []) == 0
    with pytest.raises(TypeError), store.transaction() as tx:
        apply_segments(tx, prepare_chunk(store, [old, new]).segments or [])
    assert store.read("Observation", "o1")["meta"]["versionId"] == "2"  # type: ignore[index]


def test_codes_that_are_equal_numbers_of_other_types_are_written_as_given(
        two_stores: tuple[SqlStore, SqlStore]) -> None:
    """1, 1.0 and True (and 0.0, -0.0) are one dict key but differ in COPY text: the chunk
    write's cache of formatted index lines must not write one for another."""
    one_by_one, batched = two_stores
    records = []
    for n, code in enumerate([1, True, 1.0, "1", 1, True, 1.0, False, 0, 0.0, None]):
        resource = version({**observation(n, -0.0 if n % 2 else 0.0), "code": {"coding": [
            {"system": code, "code": code}]}}, 1)
        records.append(Delivery("t", 0, n, f"Observation/o{n}", _dumps(resource), {}))
    with one_by_one.transaction() as tx:
        for record in records:
            apply_delivery(tx, record)
    for record in records:  # one batch each: the cache is what carries over
        with batched.transaction() as tx:
            apply_chunk(tx, [record])
    assert index_contents(batched) == index_contents(one_by_one)
    if batched.dialect == "postgresql":  # text columns: as the COPY text has them
        codes = {row[1]: row[4] for row in index_contents(batched)["token"]
                 if row[2] == "code"}
        assert [codes[f"o{n}"] for n in range(4)] == ["1", "t", "1.0", "1"]


def test_strings_with_copy_escapes_are_written_as_one_by_one_writes_them(
        two_stores: tuple[SqlStore, SqlStore]) -> None:
    """Tabs, newlines, backslashes, control and non-ASCII characters in indexed strings:
    on PostgreSQL the chunk write sends them as COPY text, escaped by the store itself."""
    one_by_one, batched = two_stores
    texts = ["a\tb", "line\nbreak\r", "back\\slash", "\\N", "\b\v\f", "Ferrè ünï 漢字", ""]
    records = []
    for n, value in enumerate(texts):
        resource = version({**observation(n, 1.0), "code": {"text": value, "coding": [
            {"system": f"urn:{value}", "code": value}]}, "valueString": value}, 1)
        records.append(Delivery("t", 0, n, f"Observation/o{n}", _dumps(resource), {}))
    with one_by_one.transaction() as tx:
        for record in records:
            apply_delivery(tx, record)
    chunk = prepare_chunk(batched, records)
    assert chunk.segments is not None
    with batched.transaction() as tx:
        assert apply_segments(tx, chunk.segments) == len(texts)
    assert index_contents(batched) == index_contents(one_by_one)


@pytest.mark.postgres
def test_a_new_version_with_nul_in_an_indexed_string_fails_the_chunk_write(
        pg_url: str) -> None:
    """PostgreSQL text cannot hold NUL: the chunk write refuses it before the database
    (the projector then finds and skips that record), as one-by-one does on PostgreSQL."""
    bad = version({**observation(1, 1.0), "code": {"text": "a\x00b"}}, 1)
    with migrated_store(pg_url) as store:
        chunk = prepare_chunk(store, [Delivery("t", 0, 0, "Observation/o1", _dumps(bad), {})])
        with pytest.raises(Exception, match="NUL"), store.transaction() as tx:
            apply_segments(tx, chunk.segments or [])
        assert store.read("Observation", "o1") is None

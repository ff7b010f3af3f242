"""The raw read path (``fastread`` on ``gateway.store.rawread``): concurrent reads answered
one by one, on both databases.

On PostgreSQL the reads of one event loop are sent together (one statement per batch on
a nonblocking connection); these tests check that every read still gets exactly its own
answer (found, unknown, deleted, odd ids, duplicates, two resource types), that a
cancelled or failed read does not disturb the others, and that a lost connection is
replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from gateway.api.fhir.fastread import RawReader, RawResource
from gateway.api.fhir.outcomes import FhirError
from gateway.errors import Gone, StoreError
from gateway.store.sql import SqlStore
from tests.support import migrated_store

from .conftest import FHIR_JSON, serving

ODD_IDS = ['a"b', "a\\b", "a,b", "{x}", "NULL", "ü-1", "x\x00y", "", " p-1", "p-1 ", "P-1"]


def _load(store: SqlStore) -> None:
    store.bulk_put([{"resourceType": "Patient", "id": f"p-{k}", "gender": "female"}
                    for k in range(6)]
                   + [{"resourceType": "Observation", "id": f"o-{k}", "status": "final",
                       "code": {"text": f"code {k}"}} for k in range(6)])
    with store.transaction() as tx:
        tx.delete("Patient", "p-3")


def _expected(store: SqlStore, rtype: str, id: str) -> Any:
    """What a read must answer: the stored resource, or the status of the FHIR error."""
    if "\x00" in id:
        return 404  # never stored (PostgreSQL text cannot hold NUL): unknown, as on SQLite
    try:
        return store.read(rtype, id) or 404
    except Gone:
        return 410


async def _read_all(reader: RawReader, keys: list[tuple[str, str]]) -> list[Any]:
    return await asyncio.gather(*(reader.read_async(t, i) for t, i in keys),
                                return_exceptions=True)


def _statements(reader: RawReader) -> int:
    return sum(b.statements for b in reader.raw.batches.values())


def test_concurrent_reads_each_get_their_own_answer(store: SqlStore):
    _load(store)
    keys = ([("Patient", f"p-{k}") for k in range(6)] + [("Observation", f"o-{k}")
                                                         for k in range(6)]
            + [("Patient", "p-1"), ("Observation", "o-2"), ("Observation", "p-1")]
            + [("Patient", odd) for odd in ODD_IDS])
    reader = RawReader(store)
    try:
        answers = asyncio.run(_read_all(reader, keys))
        if store.dialect == "postgresql":
            assert _statements(reader) == 1  # one batch for all 26 reads, two types
    finally:
        reader.close()
    for (rtype, id), answer in zip(keys, answers, strict=True):
        expected = _expected(store, rtype, id)
        if isinstance(expected, dict):
            assert isinstance(answer, RawResource), (rtype, id, answer)
            assert orjson.loads(answer.content) == expected
            assert answer.version_id == expected["meta"]["versionId"]
            assert answer.last_updated == expected["meta"]["lastUpdated"]
        else:
            assert isinstance(answer, FhirError), (rtype, id, answer)
            assert answer.status == expected, (rtype, id)


def test_reads_that_follow_one_another_are_answered_in_turn(store: SqlStore):
    _load(store)
    reader = RawReader(store)

    async def one_by_one() -> list[str]:
        return [(await reader.read_async("Observation", f"o-{k}")).version_id
                for k in range(6)]

    try:
        assert asyncio.run(one_by_one()) == ["1"] * 6
    finally:
        reader.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[SqlStore]:
    with migrated_store(pg_url) as store:
        _load(store)
        yield store


def test_a_cancelled_read_leaves_the_others_of_its_batch_answered(pg_store: SqlStore):
    reader = RawReader(pg_store)

    async def scenario() -> list[Any]:
        tasks = [asyncio.create_task(reader.read_async("Patient", f"p-{k}")) for k in (0, 1, 2)]
        await asyncio.sleep(0)  # all three are waiting on the statement now
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        first, cancelled, last = asyncio.run(scenario())
    finally:
        reader.close()
    assert isinstance(cancelled, asyncio.CancelledError)
    assert orjson.loads(first.content)["id"] == "p-0"
    assert orjson.loads(last.content)["id"] == "p-2"


def test_a_lost_connection_fails_its_reads_and_the_next_read_reconnects(pg_store: SqlStore):
    reader = RawReader(pg_store)

    async def scenario() -> list[Any]:
        await reader.read_async("Patient", "p-0")
        batches = next(iter(reader.raw.batches.values()))
        with pg_store.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                         {"pid": batches.pgconn.backend_pid})
        answers = []
        for _ in range(3):  # the loss shows on the first read at the latest
            try:
                answers.append(await asyncio.wait_for(reader.read_async("Patient", "p-1"), 30))
            except StoreError as exc:
                answers.append(exc)
        assert batches.closed
        return answers

    try:
        answers = asyncio.run(scenario())
    finally:
        reader.close()
    assert sum(isinstance(a, StoreError) for a in answers) <= 1
    assert all(str(a).startswith("database error") for a in answers if isinstance(a, StoreError))
    assert isinstance(answers[-1], RawResource)
    assert orjson.loads(answers[-1].content)["id"] == "p-1"


def test_each_event_loop_reads_on_its_own_connection(pg_store: SqlStore):
    reader = RawReader(pg_store)
    try:
        asyncio.run(reader.read_async("Patient", "p-0"))
        first = next(iter(reader.raw.batches.values()))
        asyncio.run(reader.read_async("Patient", "p-1"))
        second = next(iter(reader.raw.batches.values()))
        assert first is not second and first.closed and first.conn.closed
        assert list(reader.raw.batches.values()) == [second]
    finally:
        reader.close()
    assert second.conn.closed


def test_concurrent_http_reads_keep_their_headers_and_statuses(store: SqlStore):
    _load(store)
    paths = [f"/Patient/p-{k}" for k in range(6)] + ["/Patient/nope", "/Observation/o-1"]

    async def fetch(base: str, headers: dict[str, str] | None = None) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=30,
                                     headers={"Accept": FHIR_JSON}) as http:
            return await asyncio.gather(*(http.get(p, headers=headers) for p in paths * 3))

    with serving(store) as served:
        with served.client() as http:
            alone = {p: http.get(p) for p in paths}
        together = asyncio.run(fetch(served.base))
        again = asyncio.run(fetch(served.base, {"If-None-Match": 'W/"1"'}))
    for path, response in zip(paths * 3, together, strict=True):
        single = alone[path]
        assert response.status_code == single.status_code, path
        assert response.content == single.content, path
        for name in ("etag", "last-modified", "content-type"):
            assert response.headers.get(name) == single.headers.get(name), (path, name)
    assert [r.status_code for r in again] == [
        {200: 304}.get(alone[p].status_code, alone[p].status_code) for p in paths * 3]
    assert {r.status_code for r in together} == {200, 404, 410}


def test_a_failing_statement_fails_its_reads_and_keeps_the_connection(pg_store: SqlStore):
    reader = RawReader(pg_store)

    async def scenario() -> Any:
        await reader.read_async("Patient", "p-0")
        before = next(iter(reader.raw.batches.values()))
        with pg_store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE resource RENAME TO resource_away"))
        failed = await _read_all(reader, [("Patient", "p-0"), ("Patient", "p-1")])
        with pg_store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE resource_away RENAME TO resource"))
        read = await reader.read_async("Patient", "p-1")
        return failed, read, list(reader.raw.batches.values()) == [before] and not before.closed

    try:
        failed, read, same_connection = asyncio.run(scenario())
    finally:
        reader.close()
    assert [str(e) for e in failed] == [
        "database error: UndefinedTable (resource=Patient/p-0)",
        "database error: UndefinedTable (resource=Patient/p-1)"]
    assert orjson.loads(read.content)["id"] == "p-1" and same_connection


@pytest.mark.postgres
async def test_closing_the_store_closes_the_connections_of_the_fast_reads(pg_url: str) -> None:
    # regression: a gateway stopped after reads by id on PostgreSQL left its detached
    # reading connection open (a ResourceWarning in whichever test ran when it was collected)
    store = SqlStore(pg_url)
    store.migrate()
    reader = RawReader(store)
    with pytest.raises(FhirError):
        await reader.read_async("Patient", "nobody")
    batches = list(reader.raw.batches.values())
    store.close()
    await asyncio.sleep(0)  # closing is scheduled on the loop that owns the connection
    assert batches and all(b.closed for b in batches)
    assert all(b.conn.closed for b in batches)

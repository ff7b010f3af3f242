"""The edge's lean store and outbox rows that name their history row, on both databases:
what an edge writes, what a hub writes, and what happens when a database changes role."""

from __future__ import annotations

from sqlalchemy import func, insert, inspect, select

from gateway.store import schema as s
from gateway.store.sql import SqlStore


def observation(oid: str, code: str = "718-7", subject: str = "Patient/p1") -> dict[str, object]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": subject}, "valueQuantity": {"value": 13.5, "unit": "g/dL"}}


def count(store: SqlStore, *tables: object) -> int:
    with store.engine.connect() as conn:
        return sum(int(conn.execute(select(func.count()).select_from(t)).scalar_one())  # type: ignore[arg-type]
                   for t in tables)


def index_rows(store: SqlStore) -> int:
    return count(store, *s.INDEX_TABLES.values())


def profile(store: SqlStore) -> str | None:
    c = s.store_setting.c
    with store.engine.connect() as conn:
        return conn.execute(select(c.value).where(c.name == "profile")).scalar()


def resource_indexes(store: SqlStore) -> set[str]:
    with store.engine.connect() as conn:
        return {ix["name"] for ix in inspect(conn).get_indexes("resource")}  # type: ignore[misc]


def opened(url: str, edge: bool | None) -> SqlStore:
    store = SqlStore(url, edge=edge)
    store.migrate()
    return store


def edge_history(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put_many([observation("o1"), observation("o2")], source="urn:node:e")
        tx.put(observation("o3"))
    with store.transaction() as tx:
        tx.put_many([observation("o1", code="6690-2")])
        tx.delete("Observation", "o2")


def test_an_edge_store_keeps_current_rows_and_its_outbox_only(database_url: str) -> None:
    edge = opened(database_url, True)
    try:
        edge_history(edge)
        assert profile(edge) == "edge"
        assert index_rows(edge) == 0 and count(edge, s.resource_version) == 0
        assert "ix_resource_live" not in resource_indexes(edge)
        assert edge.read("Observation", "o1")["code"]["coding"][0]["code"] == "6690-2"  # type: ignore[index]
        rows = edge.outbox_fetch()
        assert [(r.key, r.version_id) for r in rows] == [
            ("Observation/o1", 1), ("Observation/o2", 1), ("Observation/o3", 1),
            ("Observation/o1", 2), ("Observation/o2", 2)]
        # every payload is the content of exactly that version; the delete is a tombstone
        assert [r.payload is None for r in rows] == [False, False, False, False, True]
        assert b'"versionId":"1"' in rows[0].payload and b'"718-7"' in rows[0].payload  # type: ignore[operator]
        assert b'"versionId":"2"' in rows[3].payload and b'"6690-2"' in rows[3].payload  # type: ignore[operator]
    finally:
        edge.close()


def test_a_hub_outbox_row_names_its_history_row_instead_of_a_copy(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.put_many([observation("o1")])
        tx.put(observation("o2"))
    with store.engine.connect() as conn:
        stored = conn.execute(select(s.outbox.c.payload)).scalars().all()
    assert stored == [None, None]
    assert [r.payload is not None and b'"resourceType":"Observation"' in r.payload
            for r in store.outbox_fetch()] == [True, True]


def test_an_outbox_row_written_with_its_own_payload_is_published_with_it(store: SqlStore) -> None:
    """Rows written before revision 0003 carry their payload; the relay still sends it."""
    with store.transaction() as tx:
        tx.conn.execute(insert(s.outbox).values(
            key="Patient/old", res_type="Patient", res_id="old", version_id=1,
            payload=b'{"resourceType":"Patient","id":"old"}', headers="{}",
            created="2026-11-01T00:00:00.000Z"))
    (row,) = store.outbox_fetch()
    assert row.payload == b'{"resourceType":"Patient","id":"old"}'


def test_an_edge_database_opened_by_a_hub_gets_history_and_index_built(
        database_url: str) -> None:
    edge = opened(database_url, True)
    edge_history(edge)
    with edge.transaction() as tx:
        tx.put_many([observation(f"m{i}", subject=f"Patient/p{i % 3}") for i in range(1200)])
    edge.close()
    hub = opened(database_url, False)
    try:
        assert profile(hub) == "hub"
        assert {"ix_resource_live", "ix_resource_type_updated"} <= resource_indexes(hub)
        # the history comes back from the outbox, the delete included
        assert [r["meta"]["versionId"] for r in hub.history("Observation", "o1")] == ["2", "1"]
        assert hub.vread("Observation", "o1", 1)["code"]["coding"][0]["code"] == "718-7"  # type: ignore[index]
        assert [v.deleted for v in hub.history_versions("Observation", "o2")] == [True, False]
        found = hub.search("Observation", [("subject", "Patient/p1"), ("_count", "1000"),
                                           ("_total", "accurate")])
        # 400 m* for p1, plus o1 and o3 (o2 is deleted)
        assert found.total == 402 and all(r["subject"]["reference"] == "Patient/p1"
                                          for r in found.resources)
        assert hub.search("Observation", [("_id", "o2")]).resources == []
        with hub.transaction() as tx:  # and maintained from now on
            tx.put(observation("new", code="777-3"))
        codes = hub.search("Observation", [("code", "http://loinc.org|777-3")]).resources
        assert [r["id"] for r in codes] == ["new"]
    finally:
        hub.close()


def test_a_hub_database_opened_as_an_edge_drops_what_an_edge_does_not_keep(
        database_url: str) -> None:
    hub = opened(database_url, False)
    with hub.transaction() as tx:
        tx.put(observation("o1"))
    assert index_rows(hub) > 0
    hub.close()
    edge = opened(database_url, True)
    try:
        assert index_rows(edge) == 0 and profile(edge) == "edge"
        assert "ix_resource_live" not in resource_indexes(edge)
    finally:
        edge.close()


def test_a_command_line_tool_follows_what_the_database_is(database_url: str) -> None:
    opened(database_url, True).close()
    tool = opened(database_url, None)
    try:
        assert tool.edge and profile(tool) == "edge"
        with tool.transaction() as tx:
            tx.put(observation("o1"))
        assert index_rows(tool) == 0 and count(tool, s.resource_version) == 0
    finally:
        tool.close()

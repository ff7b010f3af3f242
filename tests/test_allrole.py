"""Role all = an edge and a hub in one process (real sockets, real databases): the ingest
writes the lean edge store, the projector the hub store that the FHIR API serves; a data
directory's old single database is converted at the first start without loss."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

from gateway.adapters.loader import EXAMPLE_SITES, load_network
from gateway.config import Settings, hub_beside
from gateway.errors import ConfigError
from gateway.ingest import IngestService
from gateway.mapping.pseudonym import load_or_create_key
from gateway.runtime import Gateway
from gateway.store.split import convert_single_database
from gateway.store.sql import SqlStore
from tests.support import hub_search, migrated_store, settled
from tests.test_daily_loop import add_code, oru
from tests.test_runtime import msa, send, start_gateway


def test_the_hub_store_is_beside_the_edge_store_unless_named() -> None:
    assert hub_beside("sqlite:////var/lib/gw/gateway.db") == "sqlite:////var/lib/gw/gateway-hub.db"
    pg = hub_beside("postgresql://gw:pw@db:5432/gateway?sslmode=require")
    assert pg.startswith("postgresql://gw:pw@db:5432/gateway?")
    assert "sslmode=require" in pg and "options=-csearch_path%3Dhub" in pg
    settings = Settings(role="all", data_dir=Path("/data"))
    assert settings.resolved_database_url() == "sqlite:////data/gateway.db"
    assert settings.hub_url() == "sqlite:////data/gateway-hub.db"
    named = Settings(role="all", hub_database_url="postgresql://h/hub")
    assert named.hub_url() == "postgresql://h/hub"
    assert Settings(role="edge").hub_url() is None
    assert Settings(role="hub", database_url="sqlite:///h.db").hub_url() == "sqlite:///h.db"
    with pytest.raises(ConfigError, match="in-memory"):
        hub_beside("sqlite:///:memory:")


async def api_get(gw: Gateway, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(f"http://127.0.0.1:{gw.http_port}{path}")


async def test_role_all_acknowledges_from_the_lean_edge_store_and_the_api_shows_it_shortly_after(
        tmp_path: Path, database_url: str) -> None:
    gw = await start_gateway(tmp_path, database_url)
    try:
        assert gw.store is not None and gw.hub_store is not None
        assert gw.store.edge and not gw.hub_store.edge
        [ack] = await send(gw, oru("ALL1"))
        assert msa(ack) == ["AA", "ALL1"]
        record = gw.store.inbox_find("LAB", "HPG23", "ALL1")
        assert record is not None and record.status == "processed"
        ref = next(r for r in record.resource_refs if r.startswith("Observation/"))
        path = "/fhir/" + ref.rsplit("/_history/", 1)[0]
        for _ in range(100):  # no settle: the projector's own pace
            if (found := await api_get(gw, path)).status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert found.status_code == 200 and found.json()["valueQuantity"]["value"] == 41
        # the edge keeps no search index: the search is the hub's
        assert gw.store.search("Observation", [("code", "urn:plagencell:site:hpg23:codes|"
                                                          "ZZNEW")]).resources == []
        assert len(await hub_search(gw, "Observation", [
            ("code", "urn:plagencell:site:hpg23:codes|ZZNEW")])) == 1
        bus = (await api_get(gw, "/admin/bus")).json()
        assert bus["projector"]["applied"] >= 1 and bus["projector"]["last_error"] is None
        assert bus["relay"]["pending"] == 0 and bus["hub_relay"]["healthy"] is True
    finally:
        await gw.stop()


async def test_role_all_serves_api_writes_from_the_hub_and_relays_them(
        tmp_path: Path, database_url: str) -> None:
    gw = await start_gateway(tmp_path, database_url)
    try:
        body = {"resourceType": "Organization", "id": "lab-x", "name": "Lab X"}
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.put(f"http://127.0.0.1:{gw.http_port}/fhir/Organization/lab-x",
                               json=body, headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 201, r.text
        assert (await api_get(gw, "/fhir/Organization/lab-x")).json()["name"] == "Lab X"
        assert gw.store is not None and gw.store.read("Organization", "lab-x") is None
        assert await gw.settle()
        assert gw.bus.status()["hub_relay"]["published"] >= 1
    finally:
        await gw.stop()


def old_single_database(url: str, sites: Path, data_dir: Path) -> None:
    """What role all kept before: one full (hub-profile) store that the ingest wrote."""
    network = load_network(sites)
    key = load_or_create_key(data_dir)
    with migrated_store(url) as store:
        service = IngestService(store, network, key, node_id="old-node")
        service.start()
        try:
            for cid in ("OLD1", "OLD2"):
                outcome = asyncio.run(service.handle(oru(cid, value="41" if cid == "OLD1"
                                                         else "42")))
                assert b"MSA|AA|" in outcome.responses[0]
        finally:
            service.stop()


async def test_an_old_single_all_database_is_converted_at_start_without_loss(
        tmp_path: Path, database_url: str) -> None:
    sites, data = tmp_path / "sites", tmp_path / "var"
    shutil.copytree(EXAMPLE_SITES, sites)
    data.mkdir(mode=0o700)
    await asyncio.to_thread(old_single_database, database_url, sites, data)
    with migrated_store(database_url) as old:
        [observation] = old.search("Observation", [
            ("code", "urn:plagencell:site:hpg23:codes|ZZNEW")]).resources
        versions = {r: old.read(*r.split("/"))["meta"]["versionId"]  # type: ignore[index]
                    for r in (f"Observation/{observation['id']}",)}
        messages = {(m.control_id, m.id) for m in old.inbox_list(limit=10)}
    assert observation["valueQuantity"]["value"] == 42  # OLD2, the same result, version 2
    assert versions == {f"Observation/{observation['id']}": "2"}

    gw = await start_gateway(tmp_path, database_url, sites=sites)
    try:
        assert gw.store is not None and gw.hub_store is not None
        assert gw.store.edge and not gw.hub_store.edge
        # the edge: the old inbox (same ids), current versions; the hub: everything else
        assert {(m.control_id, m.id) for m in gw.store.inbox_list(limit=10)} == messages
        assert gw.hub_store.inbox_list(limit=10) == []  # raw messages stay on the edge side
        assert gw.store.read("Observation", observation["id"])["meta"]["versionId"] == "2"  # type: ignore[index]
        r = await api_get(gw, f"/fhir/Observation/{observation['id']}")
        assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
        history = await api_get(gw, f"/fhir/Observation/{observation['id']}/_history")
        assert history.json()["total"] == 2  # the hub kept the history
        # an old message resent: answered from the inbox, nothing new
        [again] = await send(gw, oru("OLD2", value="42"))
        assert msa(again) == ["AA", "OLD2"]
        # the old messages replayed after a code-map fix: OLD1 (41) then OLD2 (42) map to
        # the LOINC code, versions 3 and 4, numbered on from the converted history
        add_code(sites)
        async with httpx.AsyncClient(timeout=30) as http:
            base = f"http://127.0.0.1:{gw.http_port}/admin"
            assert (await http.post(f"{base}/reload")).status_code == 200
            replay = await http.post(f"{base}/replay", params={"status": "all"})
        assert replay.json()["remapped"] == 2 and replay.json()["errors"] == 0
        [mapped] = await hub_search(gw, "Observation", [("code", "http://loinc.org|2276-4")])
        assert mapped["id"] == observation["id"] and mapped["meta"]["versionId"] == "4"
        assert mapped["valueQuantity"]["value"] == 42
        # a new message: a new resource beside the old ones
        [ack] = await send(gw, oru("NEW1").replace(b"FILL555", b"FILL777"))
        assert msa(ack) == ["AA", "NEW1"]
        found = await hub_search(gw, "Observation", [("code", "http://loinc.org|2276-4")])
        assert len(found) == 2
    finally:
        await gw.stop()
    again_gw = await start_gateway(tmp_path, database_url, sites=sites)  # converted once
    try:
        assert convert_single_database(again_gw.settings.resolved_database_url(),
                                       again_gw.settings.hub_url() or "") is None
        hub = await settled(again_gw)
        assert len(hub.search("Observation", [("code", "http://loinc.org|2276-4")]).resources) == 2
    finally:
        await again_gw.stop()


async def test_a_conversion_interrupted_after_the_move_is_finished_at_the_next_start(
        tmp_path: Path, database_url: str) -> None:
    sites, data = tmp_path / "sites", tmp_path / "var"
    shutil.copytree(EXAMPLE_SITES, sites)
    data.mkdir(mode=0o700)
    await asyncio.to_thread(old_single_database, database_url, sites, data)
    hub_url = hub_beside(database_url)
    from gateway.store import split

    real_fill = split._fill
    split._fill = _crash  # type: ignore[assignment]
    try:
        with pytest.raises(RuntimeError, match="power cut"):
            convert_single_database(database_url, hub_url)
    finally:
        split._fill = real_fill  # type: ignore[assignment]
    done = convert_single_database(database_url, hub_url)
    assert done is not None and done.messages == 2 and done.resources > 5
    assert convert_single_database(database_url, hub_url) is None
    edge = SqlStore(database_url, edge=True)
    try:
        with edge.engine.connect() as conn:
            assert "resource" in inspect(conn).get_table_names()
        assert len(edge.inbox_list(limit=10)) == 2
    finally:
        edge.close()


def _crash(edge_url: str, hub_url: str) -> None:
    raise RuntimeError("power cut")


async def test_the_audit_trail_of_role_all_is_the_hub_s_and_verify_finds_it_from_the_data_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli.main import main

    gw = await start_gateway(tmp_path)  # SQLite files in the data dir
    try:
        assert (await api_get(gw, "/fhir/Patient")).status_code == 200
        assert gw.audit is not None and gw.audit.flush()
        assert gw.store is not None and gw.hub_store is not None
        from gateway.store.audit import AuditLog, AuditQuery

        events, _ = AuditLog(gw.hub_store).search(AuditQuery(count=100))
        assert events and AuditLog(gw.store).search(AuditQuery(count=100))[0] == []
    finally:
        await gw.stop()
    data = tmp_path / "var"
    assert (data / "gateway.db").is_file() and (data / "gateway-hub.db").is_file()
    assert await asyncio.to_thread(main, ["audit", "verify", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("audit trail intact: ")
    assert int(out.split("intact: ")[1].split(" ")[0]) >= len(events)  # and the stop's own


async def test_an_old_single_database_with_an_empty_named_hub_is_refused_and_left_alone(
        tmp_path: Path, database_url: str) -> None:
    from gateway.bus.settings import BusSettings

    sites, data = tmp_path / "sites", tmp_path / "var"
    shutil.copytree(EXAMPLE_SITES, sites)
    data.mkdir(mode=0o700)
    await asyncio.to_thread(old_single_database, database_url, sites, data)
    settings = Settings(http_port=0, mllp_port=0, data_dir=data, sites=sites,
                        database_url=database_url, bus=BusSettings(node_id="t"),
                        hub_database_url=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    gw = Gateway(settings)
    with pytest.raises(ConfigError, match="--hub-database-url"):
        await gw.start()
    await gw.stop()
    old = SqlStore(database_url, edge=None)  # as the database says it is
    try:
        old.migrate()
        assert not old.edge  # still the full store: its search index not dropped
        assert len(old.search("Observation", [
            ("code", "urn:plagencell:site:hpg23:codes|ZZNEW")]).resources) == 1
    finally:
        old.close()

"""The whole gateway (role all) on both databases: ingest, FHIR reads and searches, admin
actions and a SIGHUP reload are on the trail; no identity of the messages is."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.audit import AuditMiddleware
from gateway.runtime import Gateway
from gateway.store.audit import AuditLog, AuditQuery
from tests.support import settled
from tests.test_runtime import start_gateway

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "oru_r01_10obx.hl7"
# every identity string of the sample (PID-3 MRN and codice fiscale, PID-5 name, PID-7
# birth date, PID-11 address, PID-13 phone, PV1-7/ORC-12 the ordering physician)
IDENTITY = ["MRN0048213", "RSSMRA70A01A794X", "ROSSI", "Rossi", "MARIO", "19700101",
            "1970-01-01", "VIA TESTA", "0000000", "BIANCHI", "LUCA"]


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path, database_url)
    yield gw
    await gw.stop()


def trail(gw: Gateway) -> list[dict[str, object]]:
    assert gw.audit is not None and gw.audit.flush()
    rows, _ = AuditLog(gw.trail_store).search(AuditQuery(newest_first=False, count=10_000))
    return [orjson.loads(content) for _, content in rows]


def subtypes(events: list[dict[str, object]]) -> list[str]:
    return [e["subtype"][-1]["code"] for e in events]  # type: ignore[index]


async def test_ingest_reads_admin_actions_and_reloads_are_audited_without_identity(
        gateway: Gateway) -> None:
    assert gateway.http is not None
    assert gateway.http.config.app.user_middleware[0].cls is AuditMiddleware  # outermost
    base = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        ack = await http.post("/hl7v2", content=SAMPLE.read_bytes(),
                              headers={"Content-Type": "x-application/hl7-v2+er7"})
        assert ack.status_code == 200
        await settled(gateway)  # role all: the FHIR API shows it once the projector wrote it
        found = await http.get("/fhir/Patient", params={
            "identifier": "MRN0048213", "name": "ROSSI", "birthdate": "1970-01-01"})
        assert found.status_code == 200
        patients = await http.get("/fhir/Patient")
        patient_id = patients.json()["entry"][0]["resource"]["id"]
        assert (await http.get(f"/fhir/Patient/{patient_id}")).status_code == 200
        assert (await http.get("/fhir/Observation", params={
            "subject.identifier": "RSSMRA70A01A794X"})).status_code in (200, 400)
        [message] = (await http.get("/admin/messages")).json()["messages"]
        assert (await http.post(f"/admin/messages/{message['id']}/replay")).status_code == 200
        gateway.reload_sites()
        assert (await http.get("/healthz")).json()["audit"]["status"] == "ok"
        events = trail(gateway)
        assert subtypes(events) == ["hl7v2-ingest", "search-type", "search-type", "read",
                                    "search-type", "message-search", "replay", "reload"]
        ingest, search, _, read, _, _, replay, reload = events
        assert ingest["entity"][0]["what"]["identifier"]["value"] == str(message["id"])
        assert read["entity"][0]["what"] == {"reference": f"Patient/{patient_id}"}
        assert replay["entity"][0]["what"]["identifier"]["value"] == str(message["id"])
        assert reload["outcome"] == "0" and reload["source"]["site"] == "test-node"
        query = base64.b64decode(search["entity"][0]["query"]).decode()  # type: ignore[index]
        assert query.count("hmac-sha256:") == 3
        served = await http.get("/fhir/AuditEvent", params={"subtype": "replay"})
        assert [e["resource"]["id"] for e in served.json()["entry"]] == [replay["id"]]
    everything = trail(gateway)
    text = b"\n".join(orjson.dumps(e) for e in everything)
    text += b"\n".join(base64.b64decode(x["query"]) for e in everything
                       for x in e.get("entity", ()) if "query" in x)  # type: ignore[union-attr]
    for secret in IDENTITY:
        assert secret.encode() not in text, secret


async def test_an_edge_keeps_and_serves_its_own_trail(tmp_path: Path, database_url: str) -> None:
    from gateway.bus.settings import BusSettings
    from gateway.config import Settings

    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var", role="edge",
                        database_url=database_url, bus=BusSettings(node_id="edge-1"))
    edge = Gateway(settings)
    await edge.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.http_port}") as http:
            assert (await http.get("/admin/messages")).status_code == 200
            assert (await http.get("/fhir/Patient")).status_code == 404  # no FHIR API here
            assert edge.audit is not None and edge.audit.flush()
            served = (await http.get("/fhir/AuditEvent", params={"_sort": "date"})).json()
        events = [e["resource"] for e in served["entry"]]
        assert subtypes(events) == ["message-search", "search-type"]
        assert events[1]["outcome"] == "4"
        assert {e["source"]["site"] for e in events} == {"edge-1"}
    finally:
        await edge.stop()


async def test_the_capability_statement_lists_the_audit_event_search(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        statement = (await http.get("/fhir/metadata")).json()
    [entry] = [r for r in statement["rest"][0]["resource"] if r["type"] == "AuditEvent"]
    assert {p["name"] for p in entry["searchParam"]} >= {
        "date", "agent", "entity", "type", "subtype", "outcome"}
    assert {i["code"] for i in entry["interaction"]} == {"read", "search-type"}

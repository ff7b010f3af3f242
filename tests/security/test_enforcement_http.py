"""Every HTTP endpoint of the running gateway × {no token, bad token, wrong scope, the
right scope, another site}: 401 / 401 / 403 / admitted / AR or 403 (issue 10 item 3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.runtime import Gateway
from gateway.security.principal import ADMIN, AUDIT, GATEWAY_SCOPES, INGEST, RAW
from tests.security.support import ApiClient, bearer, get_token, start, write_clients
from tests.test_runtime import err, msa, oru

EVERYTHING = ApiClient("all", ["system/*.cruds", *sorted(GATEWAY_SCOPES)])
UNRELATED = ApiClient("unrelated", ["system/Organization.r"])
MONZA = ApiClient("monza-feed", [INGEST], sites=["asstmonza"])
BERGAMO = ApiClient("bergamo-feed", [INGEST], sites=["hpg23"])

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}
# (method, path, body, the one scope that admits it)
ENDPOINTS: list[tuple[str, str, object, str]] = [
    ("GET", "/fhir/Observation", None, "system/Observation.s"),
    ("POST", "/fhir/Observation/_search", {}, "system/Observation.s"),
    ("GET", "/fhir/Observation/o1", None, "system/Observation.r"),
    ("GET", "/fhir/Observation/o1/_history", None, "system/Observation.r"),
    ("GET", "/fhir/Observation/o1/_history/1", None, "system/Observation.r"),
    ("GET", "/fhir/Observation/_history", None, "system/Observation.r"),
    ("GET", "/fhir/_history", None, "system/*.r"),
    ("POST", "/fhir/Patient", PATIENT, "system/Patient.c"),
    ("PUT", "/fhir/Patient/p1", PATIENT, "system/Patient.u"),
    ("PUT", "/fhir/Patient?identifier=x|1", PATIENT, "system/Patient.u"),
    ("DELETE", "/fhir/Patient/p1", None, "system/Patient.d"),
    ("DELETE", "/fhir/Patient?identifier=x|1", None, "system/Patient.d"),
    ("GET", "/fhir/ConceptMap", None, "system/ConceptMap.s"),
    ("GET", "/fhir/ConceptMap/$translate?system=x&code=y", None, "system/ConceptMap.r"),
    ("GET", "/fhir/CodeSystem", None, "system/CodeSystem.s"),
    ("GET", "/fhir/SearchParameter", None, "system/SearchParameter.s"),
    ("GET", "/fhir/AuditEvent", None, AUDIT),
    ("GET", "/admin/messages", None, ADMIN),
    ("GET", "/admin/messages/1", None, ADMIN),
    ("GET", "/admin/messages/1/raw", None, RAW),
    ("POST", "/admin/messages/1/replay", None, ADMIN),
    ("GET", "/admin/bus", None, ADMIN),
    ("POST", "/admin/reload", None, ADMIN),
    ("POST", "/admin/replay", None, ADMIN),
    ("GET", "/admin/unmapped-codes", None, ADMIN),
    ("POST", "/hl7v2", None, INGEST),
    ("POST", "/lab-exports?site=hpg23", None, INGEST),
    ("GET", "/docs", None, "system/Organization.r"),
    ("GET", "/redoc", None, "system/Organization.r"),
    ("GET", "/openapi.json", None, "system/Organization.r"),
]
OPEN = ["/healthz", "/fhir/metadata", "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration", "/auth/jwks"]


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    """The whole gateway with a clients file, on SQLite and on PostgreSQL."""
    path = write_clients(tmp_path / "clients.yaml", EVERYTHING, UNRELATED, MONZA, BERGAMO)
    gw = await start(tmp_path, path, database_url)
    yield gw
    await gw.stop()


async def _call(http: httpx.AsyncClient, method: str, path: str, body: object,
                headers: dict[str, str]) -> httpx.Response:
    if path == "/hl7v2":
        return await http.request(method, path, content=oru("ENF1"),
                                  headers={**headers, "content-type": "text/plain"})
    if path.startswith("/lab-exports"):
        return await http.request(method, path, content=b"a,b\n",
                                  headers={**headers, "content-type": "text/csv"})
    kwargs = {"json": body} if body is not None else {}
    return await http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]


async def test_every_endpoint_answers_401_without_a_token_and_with_a_bad_one(
        gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        for method, path, body, _ in ENDPOINTS:
            for headers, error in (({}, None), (bearer("bad.token.here"), "invalid_token")):
                r = await _call(http, method, path, body, headers)
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                challenge = r.headers["www-authenticate"]
                assert challenge.startswith('Bearer realm="plagencell"'), challenge
                assert (error is None) == ("error=" not in challenge)
                assert r.json()["resourceType"] == "OperationOutcome"


async def test_every_endpoint_answers_403_to_a_token_without_its_scope_and_admits_its_scope(
        gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    unrelated = await get_token(base, UNRELATED)
    async with httpx.AsyncClient(base_url=base) as http:
        for method, path, body, scope in ENDPOINTS:
            if scope != "system/Organization.r":
                r = await _call(http, method, path, body, bearer(unrelated))
                assert r.status_code == 403, (method, path, r.status_code)
                issue = r.json()["issue"][0]
                assert issue["code"] == "forbidden" and "unrelated" in issue["diagnostics"]
            exact = await get_token(base, EVERYTHING, scope)
            r = await _call(http, method, path, body, bearer(exact))
            assert r.status_code not in (401, 403, 500), (method, path, scope, r.text)


async def test_open_endpoints_need_no_token(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        for path in OPEN:
            r = await http.get(path)
            assert r.status_code == 200, path
            assert r.headers["x-content-type-options"] == "nosniff"
        assert (await http.get("/healthz")).json()["auth"] == "tokens"


async def test_a_read_scope_does_not_write_and_a_search_scope_does_not_read(
        gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    reader = await get_token(base, EVERYTHING, "system/Patient.rs")
    searcher = await get_token(base, EVERYTHING, "system/Observation.s")
    async with httpx.AsyncClient(base_url=base) as http:
        writes = [await http.post("/fhir/Patient", json=PATIENT, headers=bearer(reader)),
                  await http.delete("/fhir/Patient/p1", headers=bearer(reader))]
        read = await http.get("/fhir/Observation/o1", headers=bearer(searcher))
        other_type = await http.get("/fhir/Patient", headers=bearer(searcher))
    assert [w.status_code for w in writes] == [403, 403]
    assert "'c' on Patient" in writes[0].json()["issue"][0]["diagnostics"]
    assert read.status_code == 403 and other_type.status_code == 403


async def test_each_transaction_entry_needs_its_own_scope(gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    token = await get_token(base, EVERYTHING, "system/Patient.cu system/Observation.s")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": PATIENT, "request": {"method": "PUT", "url": "Patient/p1"}},
        {"request": {"method": "GET", "url": "Observation?code=x"}},
        {"request": {"method": "DELETE", "url": "Patient/p2"}}]}
    async with httpx.AsyncClient(base_url=base) as http:
        refused = await http.post("/fhir", json=bundle, headers=bearer(token))
        bundle["entry"] = bundle["entry"][:2]
        allowed = await http.post("/fhir", json=bundle, headers=bearer(token))
        kept = await http.get("/fhir/Patient/p1", headers=bearer(
            await get_token(base, EVERYTHING, "system/Patient.r")))
    assert refused.status_code == 403
    issue = refused.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[2].request"] and "'d' on Patient" in \
        issue["diagnostics"]
    assert allowed.status_code == 200, allowed.text
    assert kept.status_code == 200  # written by the allowed transaction only


async def test_hl7_over_http_for_another_site_gets_ar_naming_msh4(gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    monza, bergamo = await get_token(base, MONZA), await get_token(base, BERGAMO)
    async with httpx.AsyncClient(base_url=base) as http:
        other = await http.post("/hl7v2", content=oru("SITE1"), headers={
            **bearer(monza), "content-type": "text/plain"})
        own = await http.post("/hl7v2", content=oru("SITE2"), headers={
            **bearer(bergamo), "content-type": "text/plain"})
    assert other.status_code == 400
    assert msa(other.content) == ["AR", "SITE1"] and err(other.content).startswith("MSH^1^4")
    assert b"hpg23" in other.content
    assert own.status_code == 200 and msa(own.content) == ["AA", "SITE2"]
    assert gateway.store is not None
    assert gateway.store.inbox_find("LAB", "HPG23", "SITE1") is None  # refused, not stored


async def test_a_lab_export_for_another_site_gets_403(gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    monza = await get_token(base, MONZA)
    async with httpx.AsyncClient(base_url=base) as http:
        other = await http.post("/lab-exports?site=hpg23", content=b"a,b\n",
                                headers={**bearer(monza), "content-type": "text/csv"})
        own = await http.post("/lab-exports?site=asstmonza", content=b"a,b\n",
                              headers={**bearer(monza), "content-type": "text/csv"})
    assert other.status_code == 403
    assert "not bound to site hpg23" in other.json()["issue"][0]["diagnostics"]
    assert own.status_code not in (401, 403)

"""FHIR sources: failure cases with respx, the happy path against a real HTTP server."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import uvicorn
from fastapi import FastAPI, Request

from gateway.adapters.fhirsource import FhirPoller, store_result
from gateway.adapters.site import Site
from gateway.store.sql import SqlStore
from tests.adapters.conftest import KEY

BASE = "https://lims.example.org/fhir"


def site(base: str = BASE, **source: Any) -> Site:
    return Site.model_validate({
        "id": "lims-site", "name": "LIMS", "kind": "cell-factory", "facilities": ["LIMS"],
        "code_map": {"VIT": {"system": "https://plagencell.example.org/fhir/CodeSystem/cgt-lab",
                             "code": "product-viability"}},
        "fhir_source": {"base_url": base, "resource_types": ["Patient", "Observation"],
                        "max_retries": 3, **source}})


def bundle(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                           "entry": [{"resource": r} for r in resources]}
    if next_url:
        out["link"] = [{"relation": "next", "url": next_url}]
    return out


PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2026-11-20T10:00:00Z"},
           "name": [{"family": "Rossi"}], "gender": "female", "birthDate": "1971-03-05"}
OBS = {"resourceType": "Observation", "id": "o1", "status": "final",
       "meta": {"lastUpdated": "2026-11-21T10:00:00Z"},
       "code": {"coding": [{"system": "urn:lims", "code": "VIT"}]},
       "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 93, "code": "%"}}


async def no_sleep(_: float) -> None:
    return None


def poller(tmp_path: Path, s: Site | None = None, client: httpx.AsyncClient | None = None,
           sleeps: list[float] | None = None) -> FhirPoller:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return FhirPoller(s or site(), KEY, tmp_path / "marks.json", client=client, sleep=sleep)


@respx.mock
async def test_429_with_retry_after_is_retried_after_the_given_delay(tmp_path: Path) -> None:
    respx.get(f"{BASE}/Patient").mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json=bundle())])
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=bundle(OBS)))
    sleeps: list[float] = []
    result = await poller(tmp_path, sleeps=sleeps).poll_once()
    assert sleeps == [7.0] and not result.errors and len(result.resources) == 1


@respx.mock
async def test_timeouts_and_5xx_back_off_then_give_up_with_an_error(tmp_path: Path) -> None:
    respx.get(f"{BASE}/Patient").mock(side_effect=httpx.ConnectTimeout("slow"))
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(503))
    sleeps: list[float] = []
    result = await poller(tmp_path, sleeps=sleeps).poll_once()
    assert sleeps == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]
    assert [e.split(":")[0] for e in result.errors] == ["Patient", "Observation"]
    assert result.high_water == {}


@respx.mock
async def test_a_401_fetches_a_new_token_once(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("LIMS_SECRET", "s3cret")
    token = respx.post("https://auth.example.org/token").mock(side_effect=[
        httpx.Response(200, json={"access_token": "t1", "expires_in": 3600}),
        httpx.Response(200, json={"access_token": "t2", "expires_in": 3600})])
    patients = respx.get(f"{BASE}/Patient").mock(side_effect=[
        httpx.Response(401), httpx.Response(200, json=bundle(PATIENT))])
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=bundle()))
    s = site(token_url="https://auth.example.org/token", client_id="gw",
             client_secret_env="LIMS_SECRET")
    result = await poller(tmp_path, s).poll_once()
    assert token.call_count == 2 and not result.errors
    assert patients.calls[-1].request.headers["authorization"] == "Bearer t2"


@respx.mock
async def test_a_malformed_bundle_is_reported_and_the_mark_does_not_move(tmp_path: Path) -> None:
    respx.get(f"{BASE}/Patient").mock(return_value=httpx.Response(200, json={"entry": 3}))
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, text="<html>"))
    p = poller(tmp_path)
    p.save_marks({"Patient": "2026-01-01T00:00:00Z"})
    result = await p.poll_once()
    assert "not a Bundle" in result.errors[0] and "not JSON" in result.errors[1]
    assert result.high_water == {"Patient": "2026-01-01T00:00:00Z"}


@respx.mock
async def test_paging_follows_next_links_and_sends_the_high_water_mark(tmp_path: Path) -> None:
    first = respx.get(f"{BASE}/Patient").mock(
        return_value=httpx.Response(200, json=bundle(PATIENT, next_url=f"{BASE}/page2")))
    respx.get(f"{BASE}/page2").mock(return_value=httpx.Response(200, json=bundle(
        {**PATIENT, "id": "p2", "meta": {"lastUpdated": "2026-11-22T00:00:00Z"}})))
    respx.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=bundle()))
    p = poller(tmp_path)
    p.save_marks({"Patient": "2026-11-01T00:00:00Z"})
    result = await p.poll_once()
    assert first.calls[0].request.url.params["_lastUpdated"] == "gt2026-11-01T00:00:00Z"
    assert len(result.resources) == 2
    assert result.high_water["Patient"] == "2026-11-22T00:00:00Z"


# -- happy path against a real HTTP server ---------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fhir_server() -> Iterator[str]:
    app = FastAPI()
    data = {"Patient": [PATIENT], "Observation": [OBS]}

    @app.get("/fhir/{rtype}")
    async def search(rtype: str, request: Request) -> dict[str, Any]:
        since = request.query_params.get("_lastUpdated", "gt")[2:]
        found = [r for r in data.get(rtype, []) if r["meta"]["lastUpdated"] > since]
        return bundle(*found)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{port}/fhir"
    server.should_exit = True
    thread.join(5)


async def test_a_fhir_source_is_polled_pseudonymised_stored_and_resumed(
        fhir_server: str, tmp_path: Path, store: SqlStore) -> None:
    s = site(fhir_server)
    async with httpx.AsyncClient(timeout=5) as client:
        p = poller(tmp_path, s, client)
        result = await p.poll_once()
        assert not result.errors and len(result.resources) == 2
        patient, obs = result.resources
        assert "Rossi" not in str(result.resources) and patient["id"] != "p1"
        assert patient["birthDate"] == "1971"
        assert obs["subject"]["reference"] == f"Patient/{patient['id']}"
        assert obs["code"]["coding"][0]["code"] == "product-viability"
        changed = await asyncio.to_thread(store_result, store, s, result, p.new_links,
                                          "2026-11-27T10:00:00Z")
        assert changed == 2 and store.read("Patient", patient["id"]) is not None
        p.save_marks(result.high_water)
        again = await p.poll_once()
        assert again.resources == []


async def test_the_gateways_own_fhir_api_is_a_source(tmp_path: Path, store: SqlStore) -> None:
    from gateway.api.fhir import fhir_router, install_fhir_errors
    from tests.adapters.conftest import serving

    source = SqlStore(f"sqlite:///{tmp_path / 'source.db'}")
    source.migrate()
    with source.transaction() as tx:
        tx.put({k: v for k, v in PATIENT.items() if k != "meta"})
        tx.put({k: v for k, v in OBS.items() if k != "meta"})
    app = FastAPI()
    app.include_router(fhir_router(source))
    install_fhir_errors(app)
    try:
        with serving(app) as base:
            s = site(f"{base}/fhir", page_size=1)
            async with httpx.AsyncClient(timeout=5) as client:
                p = poller(tmp_path, s, client)
                result = await p.poll_once()
                assert not result.errors, result.errors
                assert [r["resourceType"] for r in result.resources] == ["Patient", "Observation"]
                assert "Rossi" not in str(result.resources)
                p.save_marks(result.high_water)
                with source.transaction() as tx:
                    tx.put({**{k: v for k, v in OBS.items() if k != "meta"}, "id": "o2"})
                again = await p.poll_once()
                assert [r["resourceType"] for r in again.resources] == ["Observation"]
    finally:
        source.close()


LOCAL_OBS = {"resourceType": "Observation", "id": "o9", "status": "final",
             "code": {"coding": [{"system": "urn:lims", "code": "XYZ"}],
                      "text": "Viability (Rossi, tel. 335 1234567)"},
             "subject": {"reference": "Patient/p1"}, "valueString": "ok - firmato ROSSI"}


async def _poll_own_api(tmp_path: Path, s_update: dict[str, Any]) -> tuple[Any, Site]:
    from gateway.api.fhir import fhir_router, install_fhir_errors
    from tests.adapters.conftest import serving

    source = SqlStore(f"sqlite:///{tmp_path / 'source.db'}")
    source.migrate()
    with source.transaction() as tx:
        tx.put({k: v for k, v in PATIENT.items() if k != "meta"})
        tx.put(LOCAL_OBS)
    app = FastAPI()
    app.include_router(fhir_router(source))
    install_fhir_errors(app)
    try:
        with serving(app) as base:
            s = site(f"{base}/fhir").model_copy(update=s_update)
            async with httpx.AsyncClient(timeout=5) as client:
                return await poller(tmp_path, s, client).poll_once(), s
    finally:
        source.close()


async def test_a_source_observation_with_an_unmapped_code_is_kept_listed_and_scrubbed(
        tmp_path: Path, store: SqlStore) -> None:
    from gateway.adapters.governance import count_unmapped

    result, s = await _poll_own_api(tmp_path, {})
    assert not result.errors and result.unmapped == [("XYZ", "local")]
    [obs] = [r for r in result.resources if r["resourceType"] == "Observation"]
    assert obs["code"] == {"coding": [{"system": "urn:lims", "code": "XYZ"}],
                           "text": "Viability ([NAME], tel. [PHONE])"}
    assert obs["valueString"] == "ok - firmato [NAME]"
    await asyncio.to_thread(store_result, store, s, result, {}, "2026-11-27T10:00:00Z")
    [entry] = count_unmapped(store.inbox_iter(status="processed"))["lims-site"]
    assert (entry["code"], entry["channels"]) == ("XYZ", ["fhir-source"])


async def test_a_strict_site_does_not_store_a_source_observation_with_an_unmapped_code(
        tmp_path: Path) -> None:
    result, _ = await _poll_own_api(tmp_path, {"unmapped_codes": "strict"})
    assert [r["resourceType"] for r in result.resources] == ["Patient"]
    assert result.errors == ["Observation/o9: local code not in the site's code_map (site "
                             "unmapped_codes: strict): not stored"]

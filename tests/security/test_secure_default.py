"""Secure by default (issue 10 item 6): loopback without clients is the anonymous demo and
says so; any other address without clients refuses to start unless --insecure-no-auth,
which is announced; hardening headers; CORS off unless configured; offline /docs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from gateway.bus.settings import BusSettings
from gateway.config import Settings, add_arguments, settings_from
from gateway.errors import ConfigError
from gateway.runtime import Gateway
from gateway.security.settings import AuthSettings, is_loopback
from tests.security.support import ApiClient, bearer, get_token, start, write_clients
from tests.test_runtime import msa, oru, send


async def test_without_clients_on_loopback_it_serves_anonymously_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway")
    gw = await start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}") as http:
            health = (await http.get("/healthz")).json()
            # the README's demo: an MLLP message, then a curl without a token
            [ack] = await send(gw, oru("DEMO1"))
            for _ in range(100):  # the hub projects asynchronously
                search = await http.get("/fhir/Observation?code=http://loinc.org|1988-5")
                if search.json().get("entry"):
                    break
                await asyncio.sleep(0.1)
            cap = (await http.get("/fhir/metadata")).json()
    finally:
        await gw.stop()
    assert health["auth"] == "anonymous-loopback"
    assert msa(ack) == ["AA", "DEMO1"]
    assert search.status_code == 200 and len(search.json()["entry"]) == 1
    assert "INSECURE" in cap["rest"][0]["security"]["description"]
    assert "serving ANONYMOUSLY, on loopback" in caplog.text


async def test_without_clients_on_any_other_address_it_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(host="0.0.0.0", http_port=0, mllp_port=0,  # noqa: S104
                        data_dir=tmp_path / "var", bus=BusSettings(node_id="t"))
    gateway = Gateway(settings)
    with pytest.raises(ConfigError, match="--insecure-no-auth"):
        await gateway.start()
    await gateway.stop()
    assert gateway.http is None  # nothing was listening


async def test_insecure_no_auth_is_announced_at_start_on_healthz_and_in_the_capability(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(host="0.0.0.0", http_port=0, mllp_port=0,  # noqa: S104
                        data_dir=tmp_path / "var", bus=BusSettings(node_id="t"),
                        auth=AuthSettings(insecure_no_auth=True))
    gateway = Gateway(settings)
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
            health = (await http.get("/healthz")).json()
            cap = (await http.get("/fhir/metadata")).json()
    finally:
        await gateway.stop()
    assert health["auth"] == "insecure"
    assert "INSECURE" in cap["rest"][0]["security"]["description"]
    assert "WITHOUT AUTHENTICATION" in caplog.text


def test_the_flags_and_variables_reach_the_settings(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--clients", "c.yaml", "--cors-origin", "https://a.example",
                              "--insecure-no-auth"])
    settings = settings_from(args, {"GATEWAY_OIDC_ISSUER": "https://idp.example/realms/x",
                                    "GATEWAY_MLLP_REQUIRE_CLIENT_CERT": "1"})
    assert settings.auth.clients == Path("c.yaml") and settings.auth.insecure_no_auth
    assert settings.auth.cors_origin == ["https://a.example"]
    assert settings.auth.oidc_issuer == "https://idp.example/realms/x"
    assert settings.auth.mllp_require_client_cert
    env = settings_from(parser.parse_args([]), {"GATEWAY_CLIENTS": "x.yaml",
                                                "GATEWAY_CORS_ORIGIN": "https://a, https://b"})
    assert env.auth.clients == Path("x.yaml") and env.auth.cors_origin == ["https://a",
                                                                          "https://b"]


def test_loopback_is_recognised() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "::1", "localhost", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "gateway.example"]))  # noqa: S104


async def test_a_broken_clients_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text("clients:\n  - id: x\n    name: X\n")
    with pytest.raises(ConfigError, match=r"clients.yaml:2: clients.0.scopes"):
        await start(tmp_path, path)


async def test_docs_are_served_offline_behind_authentication_and_cors_only_when_configured(
        tmp_path: Path) -> None:
    reader = ApiClient("reader", ["system/Observation.rs"])
    path = write_clients(tmp_path / "clients.yaml", reader)
    gw = await start(tmp_path, path, cors_origin=["https://dashboard.example"])
    try:
        base = f"http://127.0.0.1:{gw.http_port}"
        token = await get_token(base, reader)
        async with httpx.AsyncClient(base_url=base) as http:
            anonymous = await http.get("/docs")
            docs = await http.get("/docs", headers=bearer(token))
            redoc = await http.get("/redoc", headers=bearer(token))
            asset = await http.get("/static-offline-docs/swagger-ui-bundle.js",
                                   headers=bearer(token))
            preflight = await http.options("/fhir/Observation", headers={
                "Origin": "https://dashboard.example", "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization"})
            foreign = await http.get("/fhir/metadata", headers={"Origin": "https://evil.example"})
    finally:
        await gw.stop()
    assert anonymous.status_code == 401
    assert docs.status_code == 200 and redoc.status_code == 200
    for page in (docs.text, redoc.text):
        assert "cdn" not in page.lower() and "/static-offline-docs/" in page
    assert asset.status_code == 200 and len(asset.content) > 100_000
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://dashboard.example"
    assert "access-control-allow-origin" not in foreign.headers


async def test_cors_is_off_by_default(tmp_path: Path) -> None:
    gw = await start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}") as http:
            r = await http.get("/fhir/metadata", headers={"Origin": "https://a.example"})
    finally:
        await gw.stop()
    assert "access-control-allow-origin" not in r.headers
    assert r.headers["cache-control"] == "no-store"

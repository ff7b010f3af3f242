"""/metrics on a running gateway: scraped after real traffic (MLLP messages, FHIR reads)
and parsed with prometheus_client's own parser; who may scrape it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.runtime import Gateway
from tests.security.support import ApiClient, bearer, get_token, start, write_clients
from tests.test_runtime import msa, oru, send, start_gateway

SCRAPER = ApiClient("prometheus", ["system/gateway.metrics"])
OPERATOR = ApiClient("operator", ["system/gateway.admin"])


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition: (name, labels) → value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return sum(v for (n, ls), v in found.items()
               if n == name and set(labels.items()) <= set(ls))


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path, database_url)
    yield gw
    await gw.stop()


async def scrape(gw: Gateway, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(f"http://127.0.0.1:{gw.http_port}/metrics", headers=headers)


async def test_metrics_count_messages_acks_errors_and_api_reads_after_real_traffic(
        gateway: Gateway) -> None:
    before = samples((await scrape(gateway)).text)
    assert value(before, "gateway_messages_total") == 0
    assert value(before, "gateway_database_up") == 1
    answers = await send(gateway, oru("MET0001"), oru("MET0002"),
                         oru("MET0003", facility="NOWHERE"))
    assert [msa(a)[0] for a in answers] == ["AA", "AA", "AR"]
    assert await gateway.settle(within=20)  # role all: the API serves the hub store
    base = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        found = (await http.get("/fhir/Observation")).json()
        obs_id = found["entry"][0]["resource"]["id"]
        assert (await http.get(f"/fhir/Observation/{obs_id}")).status_code == 200
        assert (await http.get("/fhir/Observation/no-such-id")).status_code == 404
    gateway.failures.record("drop-folder/hpg23", "ReadError", "sha256:0123abcd")
    r = await scrape(gateway)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = samples(r.text)
    assert value(after, "gateway_messages_total", site="hpg23", type="ORU^R01",
                 transport="mllp", status="processed", ack="AA") == 2
    assert value(after, "gateway_messages_total", site="unknown", status="rejected",
                 ack="AR") == 1
    assert value(after, "gateway_mapping_errors_total", site="unknown",
                 reason="UnknownSite") == 1
    assert value(after, "gateway_ack_latency_seconds_count", site="hpg23") == 2
    assert value(after, "gateway_api_requests_total", interaction="search-type",
                 status="200") == 1
    assert value(after, "gateway_api_requests_total", interaction="read", status="200") == 1
    assert value(after, "gateway_api_requests_total", interaction="read", status="404") == 1
    assert value(after, "gateway_api_request_duration_seconds_count", interaction="read") == 2
    assert value(after, "gateway_mllp_events_total", event="frames") == 3
    assert value(after, "gateway_outbox_bound") == gateway.settings.bus.outbox_max
    assert value(after, "gateway_broker_up") == 1
    assert value(after, "gateway_background_failures_total", component="drop-folder/hpg23",
                 kind="ReadError") == 1  # the counts of /admin/counters
    assert ("gateway_alerts", frozenset({("severity", "critical")})) in after
    # no label value carries an id, a control id or a raw path
    assert obs_id not in r.text and "MET0001" not in r.text and "no-such-id" not in r.text


async def test_metrics_need_the_metrics_scope_which_admin_does_not_imply(
        tmp_path: Path) -> None:
    clients = write_clients(tmp_path / "clients.yaml", SCRAPER, OPERATOR)
    gw = await start(tmp_path, clients)
    try:
        base = f"http://127.0.0.1:{gw.http_port}"
        assert (await scrape(gw)).status_code == 401
        admin = bearer(await get_token(base, OPERATOR))
        refused = await scrape(gw, admin)
        assert refused.status_code == 403
        assert "system/gateway.metrics" in refused.text
        scraper = bearer(await get_token(base, SCRAPER))
        ok = await scrape(gw, scraper)
        assert ok.status_code == 200 and "gateway_database_up 1.0" in ok.text
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/admin/alerts", headers=scraper)).status_code == 403
            assert (await http.get("/admin/alerts")).status_code == 401
            assert (await http.get("/admin/alerts", headers=admin)).status_code == 200
    finally:
        await gw.stop()


async def test_a_hub_exports_its_projector_state_and_evaluates_no_site_rules(
        tmp_path: Path) -> None:
    from gateway.adapters.loader import EXAMPLE_SITES
    from gateway.bus.settings import BusSettings
    from gateway.config import Settings

    gw = Gateway(Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var", role="hub",
                          sites=EXAMPLE_SITES, bus=BusSettings(node_id="hub-node")))
    await gw.start()
    try:
        found = samples((await scrape(gw)).text)
        assert ("gateway_projector_lag_records", frozenset()) in found  # a projector runs
        assert value(found, "gateway_projector_lag_records") == 0
        assert value(found, "gateway_database_up") == 1
        assert gw.alerts is not None and not gw.alerts.site_rules
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{gw.http_port}/admin/alerts")
        assert r.status_code == 200 and r.json()["alerts"] == []
    finally:
        await gw.stop()

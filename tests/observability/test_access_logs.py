"""Access lines (one per HTTP request, one per MLLP message) on a running gateway, their JSON
form, and the lab-export row counts on /metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.observability.access import fhir_template, interaction_of
from gateway.observability.logs import JsonFormatter
from tests.observability.test_metrics_http import samples, scrape, value
from tests.security.support import ApiClient, bearer, get_token, start, write_clients
from tests.test_runtime import msa, oru, send, start_gateway

READER = ApiClient("dashboard", ["system/Observation.rs"])
EXPORT = EXAMPLE_SITES / "samples" / "cf-smatteo" / "release-export.csv"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [r.access for r in caplog.records if r.name == "gateway.access"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("method", "path", "interaction"), [
    ("GET", "/fhir/Observation/abc", "read"), ("GET", "/fhir/Observation/abc/_history/2",
                                                "vread"),
    ("GET", "/fhir/Observation", "search-type"), ("POST", "/fhir/Observation/_search",
                                                  "search-type"),
    ("GET", "/fhir/Patient/abc/_history", "history-instance"),
    ("GET", "/fhir/Patient/_history", "history-type"), ("GET", "/fhir/_history",
                                                        "history-system"),
    ("POST", "/fhir", "batch"), ("GET", "/fhir/metadata", "capabilities"),
    ("GET", "/fhir/Patient/abc/$everything", "operation"), ("PUT", "/fhir/Group/g1", "update"),
    ("DELETE", "/fhir/Group/g1", "delete"), ("POST", "/fhir/Group", "create"),
    ("GET", "/admin/messages/17", "admin"), ("POST", "/hl7v2", "hl7v2"),
    ("GET", "/wp-login.php", "other")])
def test_each_request_is_named_by_its_interaction_never_its_ids(
        method: str, path: str, interaction: str) -> None:
    assert interaction_of(method, path) == interaction


def test_a_request_no_route_took_gets_a_template_from_its_path() -> None:
    assert fhir_template("Observation/abc/_history/2".split("/")) == \
        "/fhir/{rtype}/{id}/_history/{vid}"
    assert fhir_template("Patient/abc/$everything".split("/")) == "/fhir/{rtype}/{id}/$everything"
    assert fhir_template(["metadata"]) == "/fhir/metadata"


async def test_http_lines_name_route_status_duration_and_client_not_the_raw_path(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    clients = write_clients(tmp_path / "clients.yaml", READER)
    gw = await start(tmp_path, clients)
    try:
        [ack] = await send(gw, oru("ACC0001"))
        assert msa(ack)[0] == "AA"
        assert await gw.settle(within=20)  # role all: the API serves the hub store
        base = f"http://127.0.0.1:{gw.http_port}"
        token = bearer(await get_token(base, READER))
        async with httpx.AsyncClient(base_url=base) as http:
            found = (await http.get("/fhir/Observation", headers=token)).json()
            obs_id = found["entry"][0]["resource"]["id"]
            assert (await http.get(f"/fhir/Observation/{obs_id}", headers=token)
                    ).status_code == 200
            assert (await http.get(f"/fhir/Observation/{obs_id}")).status_code == 401
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await gw.stop()
    lines = access_lines(caplog)
    http_lines = [(a["method"], a["route"], a["status"], a["client"])
                  for a in lines if a["kind"] == "http" and a["route"] != "/auth/token"]
    assert http_lines == [("GET", "/fhir/{rtype}", 200, "dashboard"),
                          ("GET", "/fhir/{rtype}/{id}", 200, "dashboard"),
                          ("GET", "/fhir/{rtype}/{id}", 401, "-")]  # /healthz: not logged
    assert all(float(a["duration_ms"]) >= 0 for a in lines)  # type: ignore[arg-type]
    [mllp] = [a for a in lines if a["kind"] == "mllp"]
    assert (mllp["type"], mllp["site"], mllp["ack"]) == ("ORU^R01", "hpg23", "AA")
    assert str(mllp["msh10"]).startswith("msh10#") and str(mllp["peer"]).startswith("127.0.0.1:")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "gateway.access")
    assert obs_id not in text and "ACC0001" not in text


def test_the_json_format_is_one_object_per_line_with_the_access_fields() -> None:
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1,
                               "HTTP %s %s %d", ("GET", "/fhir/{rtype}", 200), None)
    record.access = {"kind": "http", "method": "GET", "route": "/fhir/{rtype}", "status": 200}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "HTTP GET /fhir/{rtype} 200"
    assert entry["logger"] == "gateway.access" and entry["level"] == "INFO"
    assert entry["access"]["route"] == "/fhir/{rtype}" and entry["time"].endswith("Z")


async def test_lab_export_rows_are_counted_by_outcome(tmp_path: Path, database_url: str
                                                      ) -> None:
    gw = await start_gateway(tmp_path, database_url)
    try:
        rows = EXPORT.read_text(encoding="utf-8").splitlines()
        broken = rows[2].replace("2026-11-18T10:15:00", "yesterday", 1)
        body = "\n".join([rows[0], rows[1], broken, *rows[3:]]) + "\n"
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(f"http://127.0.0.1:{gw.http_port}/lab-exports",
                                params={"site": "cf-smatteo"}, content=body.encode(),
                                headers={"content-type": "text/csv"})
        report = r.json()
        assert r.status_code == 422 and 0 < report["accepted"] < report["rows"]
        found = samples((await scrape(gw)).text)
        assert value(found, "gateway_labexport_rows_total", site="cf-smatteo",
                     outcome="accepted") == report["accepted"]
        assert value(found, "gateway_labexport_rows_total", site="cf-smatteo",
                     outcome="rejected") == report["rows"] - report["accepted"]
    finally:
        await gw.stop()

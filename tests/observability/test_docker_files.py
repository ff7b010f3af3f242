"""docker/prometheus/alerts.yml and docker/grafana/gateway-dashboard.json: valid, and every
metric their queries name is one that a running gateway exports."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.runtime import Gateway

DOCKER = Path(__file__).resolve().parents[2] / "docker"
METRIC = re.compile(r"\bgateway_[a-z_]+\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
                                                             "_created"), "gauge": ()}


@pytest.fixture
async def exported(tmp_path: Path) -> AsyncIterator[set[str]]:
    """Every metric name of /metrics of a gateway that runs a projector too."""
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var", sites=EXAMPLE_SITES,
                        bus=BusSettings(node_id="test-node",
                                        hub_database_url=f"sqlite:///{tmp_path / 'hub.db'}"))
    gw = Gateway(settings)
    await gw.start()
    try:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{gw.http_port}/metrics")).text
    finally:
        await gw.stop()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES.get(family.type, ()))
    yield names


def test_the_alerting_rules_parse_and_name_only_exported_metrics(exported: set[str]) -> None:
    rules = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())
    [group] = rules["groups"]
    assert group["name"] == "plagencell-gateway"
    names = {r["alert"] for r in group["rules"]}
    assert {"GatewayAlert", "GatewayDatabaseDown", "GatewayOutboxFilling",
            "GatewayProjectorLag", "GatewaySiteErrorRate"} <= names
    for rule in group["rules"]:
        used = set(METRIC.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)
        assert rule["labels"]["severity"] and rule["annotations"]["summary"]


def test_the_scrape_configuration_loads_the_rules() -> None:
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"


def test_the_grafana_dashboard_queries_name_only_exported_metrics(exported: set[str]) -> None:
    dashboard = json.loads((DOCKER / "grafana" / "gateway-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {name for e in exprs for name in METRIC.findall(e)}
    assert used <= exported, used - exported
    for needed in ("gateway_messages_total", "gateway_ack_latency_seconds_bucket",
                   "gateway_outbox_depth", "gateway_projector_lag_seconds",
                   "gateway_api_requests_total", "gateway_labexport_rows_total",
                   "gateway_alert_active"):
        assert needed in used

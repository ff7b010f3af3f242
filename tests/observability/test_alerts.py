"""Alerts: the site-file ``alerts:`` block, working hours, each rule, and on a running
gateway ``GET /admin/alerts``, ``app.state.alerts`` and the alert gauges of /metrics."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from gateway.adapters.loader import EXAMPLE_SITES, load_network
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.observability.alerts import Alerts, AlertSettings
from gateway.observability.hours import parse_hours, working_seconds
from gateway.observability.watch import BusWatch
from gateway.runtime import Gateway
from tests.observability.test_metrics_http import samples, scrape, value
from tests.test_runtime import msa, oru, send

ROME = "Europe/Rome"
MINIMAL = "id: osp-nuovo\nname: Ospedale Nuovo\nkind: hospital\nfacilities: [OSPNUOVO]\n"


def rome(*args: int) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(*args, tzinfo=ZoneInfo(ROME))  # type: ignore[misc]


def test_working_hours_count_only_the_minutes_inside_them() -> None:
    weekdays = parse_hours("Mon-Fri 07:00-19:00")
    # Friday 18:00 → Monday 08:00: one hour on Friday, one on Monday, none at the weekend
    friday, monday = rome(2026, 12, 4, 18, 0), rome(2026, 12, 7, 8, 0)
    assert working_seconds(weekdays, ROME, friday, monday) == 2 * 3600
    assert working_seconds(None, ROME, friday, monday) == (monday - friday).total_seconds()
    two = parse_hours("Mon-Fri 07:00-19:00, Sat 08:00-12:00")
    assert working_seconds(two, ROME, friday, monday) == 6 * 3600
    assert parse_hours("Sat-Mon 00:00-24:00")[0].days == frozenset({5, 6, 0})


@pytest.mark.parametrize(("hours", "fault"), [
    ("Mon-Fri 7-19", "DAY[-DAY] HH:MM-HH:MM"), ("Lun-Ven 07:00-19:00", "'Lun'"),
    ("Mon-Fri 19:00-07:00", "end must come after"), ("Mon 07:00-25:00", "not a time of day")])
def test_a_bad_alerts_block_is_refused_naming_file_line_and_field(
        tmp_path: Path, hours: str, fault: str) -> None:
    path = tmp_path / "osp-nuovo.yaml"
    path.write_text(MINIMAL + f"alerts:\n  silent_after_minutes: 60\n  working_hours: '{hours}'\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_network(tmp_path)
    assert caught.value.context["line"] == 7
    assert caught.value.context["field"] == "alerts.working_hours"
    assert fault in str(caught.value) and f"{path}:7:" in str(caught.value)


def test_an_unknown_alerts_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "osp-nuovo.yaml").write_text(MINIMAL + "alerts:\n  silent_after: 60\n")
    with pytest.raises(ConfigError) as caught:
        load_network(tmp_path)
    assert caught.value.context["field"] == "alerts.silent_after"


def _relay(pending: int, bound: int) -> SimpleNamespace:
    return SimpleNamespace(pending=pending, outbox_max=bound, healthy=True, published=0,
                           accepting=lambda: pending < bound)


def _projector(lag: int) -> SimpleNamespace:
    return SimpleNamespace(applied=0, status=lambda: {"lag_total": lag, "last_error": None})


def test_outbox_and_projector_rules_from_the_settings(sqlite_url: str) -> None:
    from tests.support import migrated_store

    with migrated_store(sqlite_url) as store:
        now = [1000.0]
        parts = SimpleNamespace(relay=_relay(85, 100), projector=_projector(40))
        watch = BusWatch(parts, store, clock=lambda: now[0])
        alerts = Alerts(AlertSettings(outbox_percent=80, projector_lag_seconds=60),
                        SimpleNamespace(sites={}), store, watch)
        assert [(a.rule, a.severity) for a in alerts.evaluate()] == [("outbox-full", "warning")]
        now[0] += 61  # behind for 61 s: the projector alert too; the outbox one keeps its since
        first = alerts.current()[0].since
        parts.relay = _relay(100, 100)
        raised = {a.rule: a for a in alerts.evaluate()}
        assert raised["outbox-full"].severity == "critical"
        assert raised["outbox-full"].since == first
        assert "40 records" in raised["projector-lag"].message
        parts.relay, parts.projector = _relay(0, 100), _projector(0)
        assert alerts.evaluate() == [] and alerts.current() == []


async def _site_dir(tmp_path: Path) -> Path:
    sites = tmp_path / "sites"
    shutil.copytree(EXAMPLE_SITES, sites)
    hpg = sites / "hpg23.yaml"
    hpg.write_text(hpg.read_text(encoding="utf-8").replace(
        "error_rate_percent: 5 ", "error_rate_percent: 30\n  error_rate_min_messages: 3 "),
        encoding="utf-8")
    return sites


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=database_url, sites=await _site_dir(tmp_path),
                        bus=BusSettings(node_id="test-node"), alert_interval=0.2)
    gw = Gateway(settings)
    await gw.start()
    yield gw
    await gw.stop()


async def _alerts(gw: Gateway, wanted: int) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(100):
            r = await http.get(f"http://127.0.0.1:{gw.http_port}/admin/alerts")
            assert r.status_code == 200
            found: list[dict[str, Any]] = r.json()["alerts"]
            if len(found) >= wanted:
                return found
            await asyncio.sleep(0.1)
    return found


async def test_an_error_rate_above_the_site_threshold_is_an_alert_on_the_api_and_metrics(
        gateway: Gateway) -> None:
    answers = await send(gateway, oru("ALR0001"), oru("ALR0002", value="twelve"),
                         oru("ALR0003", value="thirteen"))
    assert [msa(a)[0] for a in answers] == ["AA", "AE", "AE"]
    [alert] = await _alerts(gateway, 1)
    assert alert["rule"] == "error-rate" and alert["site"] == "hpg23"
    assert alert["severity"] == "critical"  # 67 %: at least half
    assert "2 of 3 messages" in alert["message"]
    assert "ALR000" not in alert["message"]
    assert gateway.http is not None
    assert gateway.http.config.app.state.alerts is gateway.alerts  # the console's banner
    found = samples((await scrape(gateway)).text)
    assert value(found, "gateway_alert_active", rule="error-rate", site="hpg23",
                 severity="critical") == 1
    assert value(found, "gateway_alerts", severity="critical") == 1


async def test_a_site_silent_beyond_its_working_minutes_is_an_alert(gateway: Gateway) -> None:
    [ack] = await send(gateway, oru("SIL0001"))
    assert msa(ack)[0] == "AA"
    assert gateway.store is not None and gateway.network is not None
    # hpg23: 120 minutes of Mon-Fri 07:00-19:00. Its last message was just now.
    received = datetime.now(UTC)
    quiet = Alerts(AlertSettings(), gateway.network, gateway.store,
                   clock=lambda: received + timedelta(minutes=30))
    assert [a for a in quiet.evaluate() if a.rule == "site-silent"] == []
    week = received + timedelta(days=7)  # a whole week later: 60 working hours at least
    later = Alerts(AlertSettings(), gateway.network, gateway.store, clock=lambda: week)
    [silent] = [a for a in later.evaluate() if a.rule == "site-silent"]
    assert silent.site == "hpg23" and silent.severity == "warning"
    assert "Mon-Fri 07:00-19:00" in silent.message


def test_error_rate_needs_its_minimum_of_messages() -> None:
    site = load_network().sites["hpg23"]
    alerts = Alerts(AlertSettings(), SimpleNamespace(sites={}), None)
    assert alerts._error_rate(site, Counter(error=2)) == []  # 2 < 5 messages
    [(rule, *_)] = alerts._error_rate(site, Counter(error=1, processed=9))
    assert rule == "error-rate"

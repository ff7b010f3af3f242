"""What the console shows of alerts (the contract with gateway.observability): with
``app.state.alerts`` a banner on every page and the alerted site's tile stands out;
without it, a site silent beyond its ``alerts.silent_after_minutes`` stands out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.console.data import network_tiles, silent_after
from gateway.runtime import Gateway
from gateway.security.principal import ANONYMOUS
from gateway.store.base import InboxRecord
from gateway.store.sql import SqlStore
from tests.console.support import browser, text_of
from tests.test_runtime import start_gateway


@dataclass(frozen=True)
class Alert:  # the shape gateway.observability.alerts.Alert has
    rule: str
    site: str | None
    severity: str
    since: str
    message: str


class Alerts:
    def __init__(self, *alerts: Alert) -> None:
        self.alerts = list(alerts)

    def current(self) -> list[Alert]:
        return self.alerts


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path)
    yield gw
    await gw.stop()


async def test_the_current_alerts_are_a_banner_and_the_site_tile_stands_out(
        gateway: Gateway) -> None:
    assert gateway.http is not None
    app: Any = gateway.http.config.app
    async with browser(gateway) as http:
        quiet = await http.get("/console")
        app.state.alerts = Alerts(Alert("site-silent", "hsr", "warning",
                                        "2026-12-03T09:12:00.118Z",
                                        "site hsr sent no message for 124 minutes"))
        loud = await http.get("/console")
        bus = await http.get("/console/bus")
    assert 'role="alert"' not in quiet.text and 'class="tile alert"' not in quiet.text
    assert "1 alert" in text_of(loud) and "site hsr sent no message" in text_of(loud)
    assert 'class="tile alert" id="site-hsr"' in loud.text
    assert loud.text.count('class="tile alert"') == 1
    assert "site hsr sent no message" in text_of(bus)  # on every page


def test_a_site_silent_beyond_its_expectation_stands_out(store: SqlStore) -> None:
    with store.transaction() as tx:
        for site, at in (("hpg23", "2026-12-03T09:50:00Z"), ("hsr", "2026-12-03T07:00:00Z")):
            tx.inbox_add(InboxRecord("LIS", site.upper(), "C1", b"MSH|", at, site=site,
                                     status="processed"))
    expect = {"silent_after_minutes": 60}
    network: Any = SimpleNamespace(sites={
        "hpg23": SimpleNamespace(name="Bergamo", kind="hospital", alerts=expect),
        "hsr": SimpleNamespace(name="San Raffaele", kind="hospital",
                               alerts=SimpleNamespace(silent_after_minutes=60)),
        "polimi": SimpleNamespace(name="Policlinico", kind="hospital", alerts=None),
        "smatteo": SimpleNamespace(name="San Matteo", kind="hospital", alerts=expect)})
    tiles = {t.site: t for t in network_tiles(store, network, ANONYMOUS,
                                              datetime(2026, 12, 3, 10, 0, tzinfo=UTC), set())}
    assert not tiles["hpg23"].silent  # 10 minutes ago
    assert tiles["hsr"].silent  # 3 hours ago, 60 expected
    assert not tiles["polimi"].silent  # no expectation: never highlighted
    assert tiles["smatteo"].silent  # never sent anything
    assert silent_after(SimpleNamespace(alerts={"silent_after_minutes": "x"})) is None
    # with the alert rules running (app.state.alerts), they decide, not the tiles
    ruled = network_tiles(store, network, ANONYMOUS, datetime(2026, 12, 3, 10, 0, tzinfo=UTC),
                          set(), own_silence=False)
    assert not any(t.silent for t in ruled)

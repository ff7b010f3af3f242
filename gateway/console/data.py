"""What each console page shows, computed from the store (``gateway.store.console``) and
the site files, for one caller. No HTTP here: the routes (``gateway.console.pages``) call
these in a worker thread and render the result."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from markupsafe import Markup

from gateway.adapters.governance import tally
from gateway.adapters.loader import Network
from gateway.console import charts
from gateway.security.access import restriction_of
from gateway.security.principal import Principal
from gateway.store import SqlStore, format_instant
from gateway.store import console_queries as queries

NETWORK_TZ = ZoneInfo("Europe/Rome")  # "today" on the tiles: the network's day
ON_STUDY = ("on-study", "on-study-intervention", "on-study-observation", "follow-up")
OFF_STUDY = ("off-study", "withdrawn", "ineligible", "not-registered")
WEEKS = 26  # results per week: the last half year
CODE_MAP_LINE = ('  "{code}": {{system: "http://loinc.org", code: "<LOINC code>", '
                 'display: "<display>", unit: "<UCUM unit>"}}')


def visible_sites(network: Network, principal: Principal) -> list[str]:
    return sorted(s for s in network.sites if principal.sites is None or s in principal.sites)


@dataclass
class Tile:
    site: str
    name: str
    kind: str
    activity: queries.SiteActivity
    chart: Markup
    silent: bool
    alerted: bool

    @property
    def p50(self) -> int | None:
        return self.activity.percentile(0.50)

    @property
    def p99(self) -> int | None:
        return self.activity.percentile(0.99)


def silent_after(site: Any) -> int | None:
    """The site file's ``alerts.silent_after_minutes``, when it has one (read defensively:
    the ``alerts:`` block belongs to gateway.observability)."""
    alerts = getattr(site, "alerts", None)
    if alerts is None:
        return None
    value = alerts.get("silent_after_minutes") if isinstance(alerts, dict) else getattr(
        alerts, "silent_after_minutes", None)
    return int(value) if isinstance(value, int | float) and value > 0 else None


def network_tiles(store: SqlStore, network: Network, principal: Principal, now: datetime,
                  alerted_sites: set[str], *, own_silence: bool = True) -> list[Tile]:
    """The tiles; ``own_silence``: flag a site silent beyond its site file's
    ``alerts.silent_after_minutes`` (when no alert rules run)."""
    sites = visible_sites(network, principal)
    local = now.astimezone(NETWORK_TZ)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    activity = queries.network_activity(
        store, sites, since_24h=format_instant(now - timedelta(hours=24)),
        since_hour=format_instant(now - timedelta(hours=1)),
        since_today=format_instant(midnight))
    hour_keys = [format_instant(now - timedelta(hours=23 - n))[:13] for n in range(24)]
    tiles = []
    for site_id in sites:
        site, act = network.sites[site_id], activity[site_id]
        hours = [(f"{k[11:13]}:00 UTC", act.hours.get(k, [0, 0])[0],
                  act.hours.get(k, [0, 0])[1]) for k in hour_keys]
        limit = silent_after(site) if own_silence else None
        silent = limit is not None and (act.last_message is None or act.last_message
                                        < format_instant(now - timedelta(minutes=limit)))
        tiles.append(Tile(site_id, site.name, site.kind, act,
                          charts.hourly_bars(hours), silent,
                          site_id in alerted_sites))
    return tiles


def unmapped_codes(store: SqlStore, network: Network, principal: Principal
                   ) -> list[dict[str, Any]]:
    """Per visible site: its unmapped codes with counts, first/last seen, the YAML line."""
    sites = set(visible_sites(network, principal))
    counted = tally(queries.unmapped_codes(store))
    out = []
    for site, entries in counted.items():
        if site not in sites:
            continue
        for entry in entries:
            entry["yaml"] = CODE_MAP_LINE.format(code=entry["code"].replace('"', '\\"'))
        out.append({"site": site, "name": network.sites[site].name, "codes": entries})
    return out


def lab_exports(store: SqlStore, network: Network, principal: Principal
                ) -> list[dict[str, Any]]:
    sites = set(visible_sites(network, principal))
    out = []
    for row in queries.lab_exports(store, limit=100):
        if row.site not in sites:
            continue
        issues = (orjson.loads(row.report) if row.report else {}).get("issue", [])
        summary = next((i["diagnostics"] for i in issues if i.get("code") == "informational"),
                       row.error or "")
        rows = [i for i in issues if i.get("code") != "informational"]
        out.append({"id": row.id, "site": row.site, "received": row.received,
                    "status": row.status, "summary": summary, "issues": rows})
    return out


def _all(store: SqlStore, rtype: str, principal: Principal) -> list[dict[str, Any]]:
    restrict = restriction_of(principal)
    found: list[dict[str, Any]] = []
    params = [("_count", "500")]
    while True:
        page = store.search(rtype, params, restrict=restrict)
        found += page.resources
        if not page.next_cursor or len(found) > 20_000:
            return found
        params = [("_count", "500"), ("_cursor", page.next_cursor)]


def studies(store: SqlStore, principal: Principal, now: datetime) -> list[dict[str, Any]]:
    """Per visible study: subjects enrolled per site over time, on/off study, results per
    week (the last 26 weeks)."""
    subjects = _all(store, "ResearchSubject", principal)
    site_of = queries.sites_of(store, "ResearchSubject", [s["id"] for s in subjects])
    by_study: dict[str, list[dict[str, Any]]] = {}
    for subject in subjects:
        ref = subject.get("study", {}).get("reference", "")
        by_study.setdefault(ref.removeprefix("ResearchStudy/"), []).append(subject)
    out = []
    for study in sorted(_all(store, "ResearchStudy", principal), key=_title):
        mine = by_study.get(study["id"], [])
        status = Counter(s.get("status", "?") for s in mine)
        out.append({
            "id": study["id"], "title": _title(study), "subjects": len(mine),
            "on": sum(status[s] for s in ON_STUDY), "off": sum(status[s] for s in OFF_STUDY),
            "status": sorted(status.items()),
            "enrolment": charts.lines(_enrolment(mine, site_of)),
            "weeks": charts.week_bars(_weeks(queries.results_per_week(
                store, study["id"], _monday(now, WEEKS - 1)), now)),
        })
    return out


def _title(study: dict[str, Any]) -> str:
    ids = study.get("identifier") or [{}]
    return str(study.get("title") or ids[0].get("value") or study["id"])


def _enrolment(subjects: list[dict[str, Any]], site_of: dict[str, set[str]]
               ) -> dict[str, list[tuple[str, int]]]:
    """Per site: the cumulative count of subjects by day of enrolment (period.start, else
    when the subject was first stored)."""
    days: dict[str, Counter[str]] = {}
    for subject in subjects:
        day = (subject.get("period", {}).get("start")
               or subject.get("meta", {}).get("lastUpdated") or "")[:10]
        for site in site_of.get(subject["id"], {"site unknown"}):
            days.setdefault(site, Counter())[day] += 1
    series = {}
    for site, counter in days.items():
        total, points = 0, []
        for day in sorted(counter):
            total += counter[day]
            points.append((day, total))
        series[site] = points
    return series


def _monday(now: datetime, weeks_back: int) -> int:
    """Epoch ms of the Monday (00:00 UTC) ``weeks_back`` weeks before this week's."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
    return int((monday - timedelta(weeks=weeks_back)).timestamp() * 1000)


def _weeks(counts: dict[int, int], now: datetime) -> list[tuple[str, int]]:
    out = []
    for n in range(WEEKS - 1, -1, -1):
        key = _monday(now, n)
        day = datetime.fromtimestamp(key / 1000, UTC).date().isoformat()
        out.append((f"week of {day}", counts.get(key, 0)))
    return out

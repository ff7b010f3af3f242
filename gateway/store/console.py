"""The web console's queries (``gateway.console``): each page reads an index range, never
the whole inbox, so that a page stays under 200 ms with 100k messages stored
(``bench/console.py``).

- Network: ``ix_inbox_site_received_status``: counts per site, status and hour of the
  last 24 h and of the last hour, ACK latencies (``ack_ms``), the last message per site.
- Unmapped codes: ``ix_inbox_unmapped``: only the rows that left codes unmapped, with the
  codes (``unmapped``, named at ingest: no raw message is parsed again).
- Lab exports: ``ix_inbox_transport``: the newest imported files.
- Studies: the search index: a subject's sites from its Provenance (``target``,
  ``agent``), results per week from Observation ``research-study`` and ``date``.

A message's outcome is its status: ``processed`` answered AA, ``error`` AE, ``rejected`` AR.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import and_, func, select

from gateway.store import inbox_page
from gateway.store import schema as s
from gateway.store.base import InboxEntry, InboxFilter
from gateway.store.sql import SqlStore

_i = s.inbox.c
_r = s.idx_reference.c
_d = s.idx_date.c
_t = s.idx_token.c
OUTCOME = {"processed": "AA", "error": "AE", "rejected": "AR"}
SITE_SYSTEM = "urn:plagencell:site"
WEEK_MS = 7 * 86_400_000
MONDAY_MS = 3 * 86_400_000  # 1970-01-01 was a Thursday: weeks start on the Monday before


@dataclass
class SiteActivity:
    """One site's tile. ``hours``: the last 24 hours, oldest first: (hour key, total,
    not accepted); ``hour`` keys are UTC ``YYYY-MM-DDTHH``."""

    site: str
    today: Counter[str] = field(default_factory=Counter)
    last_hour: Counter[str] = field(default_factory=Counter)
    last_message: str | None = None
    ack_ms: list[int] = field(default_factory=list)
    hours: dict[str, list[int]] = field(default_factory=dict)

    @property
    def total_24h(self) -> int:
        return sum(total for total, _ in self.hours.values())

    @property
    def error_rate(self) -> float | None:
        """Share of the last 24 h's messages not accepted (AE, AR); None without any."""
        total = self.total_24h
        return sum(bad for _, bad in self.hours.values()) / total if total else None

    def percentile(self, p: float) -> int | None:
        if not self.ack_ms:
            return None
        ordered = sorted(self.ack_ms)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def network_activity(store: SqlStore, sites: Sequence[str], *, since_24h: str,
                     since_hour: str, since_today: str) -> dict[str, SiteActivity]:
    """Per site: outcomes today (``since_today``, an instant within the last 24 h) and in
    the last hour, hourly totals of the last 24 h, ACK latencies, the last message."""
    out = {site: SiteActivity(site) for site in sites}
    if not sites:
        return out
    hour = func.substr(_i.received, 1, 13)
    in_sites = _i.site.in_(list(sites))
    by_hour = (select(_i.site, _i.status, hour.label("hour"), func.count().label("n"))
               .where(in_sites, _i.received >= since_24h).group_by(_i.site, _i.status, hour))
    recent = (select(_i.site, _i.status, func.count().label("n"))
              .where(in_sites, _i.received >= since_hour).group_by(_i.site, _i.status))
    latency = select(_i.site, _i.ack_ms).where(in_sites, _i.received >= since_24h,
                                               _i.ack_ms.is_not(None))
    today_hour = since_today[:13]
    with store.engine.connect() as conn:
        for row in conn.execute(by_hour):
            tile, outcome = out[row.site], OUTCOME.get(row.status)
            counts = tile.hours.setdefault(row.hour, [0, 0])
            counts[0] += row.n if outcome else 0
            counts[1] += row.n if outcome in ("AE", "AR") else 0
            if outcome and row.hour >= today_hour:
                tile.today[outcome] += row.n
        for row in conn.execute(recent):
            if row.status in OUTCOME:
                out[row.site].last_hour[OUTCOME[row.status]] += row.n
        for row in conn.execute(latency):
            out[row.site].ack_ms.append(row.ack_ms)
        for site in sites:  # one index seek each
            out[site].last_message = conn.execute(
                select(func.max(_i.received)).where(_i.site == site)).scalar()
    return out


def messages_page(store: SqlStore, where: InboxFilter, *, sites: frozenset[str] | None,
                  before: tuple[str, int] | None, limit: int) -> list[InboxEntry]:
    """``/admin/messages``' page, for a caller restricted to ``sites`` (None: all)."""
    query = inbox_page.page_query(where, before, limit)
    if sites is not None:
        query = query.where(_i.site.in_(sorted(sites)))
    with store.engine.connect() as conn:
        return [inbox_page.entry(row) for row in conn.execute(query)]


def unmapped_codes(store: SqlStore) -> Iterator[tuple[str | None, str, str, list[Any]]]:
    """(site, transport, received, [[code, system], …]) of every message that left local
    codes unmapped, oldest first (the codes were named when it was stored)."""
    query = (select(_i.site, _i.transport, _i.received, _i.unmapped)
             .where(_i.unmapped.is_not(None)).order_by(_i.received))
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return ((row.site, row.transport, row.received, orjson.loads(row.unmapped))
            for row in rows)


def lab_exports(store: SqlStore, *, limit: int = 50, site: str | None = None) -> list[Any]:
    """The newest imported lab-export files (transport ``file``), with their reports."""
    query = (select(_i.id, _i.site, _i.control_id, _i.received, _i.status, _i.error,
                    _i.report).where(_i.transport == "file")
             .order_by(_i.received.desc()).limit(limit))
    if site is not None:
        query = query.where(_i.site == site)
    with store.engine.connect() as conn:
        return list(conn.execute(query).all())


def site_organizations(store: SqlStore) -> dict[str, str]:
    """Organization id → site id (the Organization with identifier ``urn:plagencell:site``)."""
    query = select(_t.res_id, _t.code).where(_t.res_type == "Organization",
                                             _t.param == "identifier",
                                             _t.system == SITE_SYSTEM)
    with store.engine.connect() as conn:
        return {row.res_id: row.code for row in conn.execute(query)}


def sites_of(store: SqlStore, resource_type: str, ids: Sequence[str]) -> dict[str, set[str]]:
    """Resource id → the sites whose messages wrote it (their Provenance's ``agent``)."""
    orgs = site_organizations(store)
    target, agent = s.idx_reference.alias("t"), s.idx_reference.alias("a")
    out: dict[str, set[str]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            query = (select(target.c.target_id, agent.c.target_id.label("org"))
                     .join(agent, and_(agent.c.res_type == "Provenance",
                                       agent.c.res_id == target.c.res_id,
                                       agent.c.param == "agent",
                                       agent.c.target_type == "Organization"))
                     .where(target.c.target_id.in_(list(ids[start:start + 500])),
                            target.c.target_type == resource_type,
                            target.c.param == "target", target.c.res_type == "Provenance"))
            for row in conn.execute(query):
                if row.org in orgs:
                    out.setdefault(row.target_id, set()).add(orgs[row.org])
    return out


def results_per_week(store: SqlStore, study_id: str, since_ms: int) -> dict[int, int]:
    """Observations tagged with the study, counted by the week (Monday, epoch ms) of their
    ``date`` (effective time), from ``since_ms`` (a study's whole history is not read)."""
    week = ((_d.low + MONDAY_MS) // WEEK_MS).label("week")
    query = (select(week, func.count(func.distinct(_r.res_id)).label("n"))
             .join(s.idx_date, and_(_d.res_type == "Observation", _d.res_id == _r.res_id,
                                    _d.param == "date", _d.low >= since_ms))
             .where(_r.target_id == study_id, _r.target_type == "ResearchStudy",
                    _r.param == "research-study", _r.res_type == "Observation")
             .group_by(week))
    with store.engine.connect() as conn:
        return {int(row.week) * WEEK_MS - MONDAY_MS: int(row.n) for row in conn.execute(query)}

"""The state metrics, read at scrape time from the parts of a running gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any, cast

from prometheus_client.core import Metric

from gateway.failures import FailureCounters
from gateway.observability.alerts import Alerts
from gateway.observability.metrics import Source, counter, flag, gauge
from gateway.observability.watch import BusWatch
from gateway.store import observe

SEVERITIES = ("warning", "critical")


def database_source(store: Any) -> Source:
    def database() -> Iterable[Metric]:
        yield gauge("gateway_database_up", "1 when the store answers a trivial query",
                    flag(observe.ping(store)))
    return database


def bus_source(watch: BusWatch) -> Source:
    def bus() -> Iterable[Metric]:
        s = watch.state()
        yield gauge("gateway_outbox_depth", "Outbox rows not yet published", s.outbox_pending)
        yield gauge("gateway_outbox_bound", "Outbox rows at which the ingest refuses "
                    "(--outbox-max)", s.outbox_max)
        yield gauge("gateway_outbox_accepting", "1 while the outbox is under its bound",
                    flag(s.accepting))
        yield gauge("gateway_relay_lag_seconds", "Age of the oldest unpublished outbox row",
                    s.relay_lag_seconds)
        yield counter("gateway_relay_published", "Outbox rows published on the bus",
                      s.published)
        yield gauge("gateway_broker_up", "1 when the relay's last publish succeeded (and the "
                    "projector's last step, where one runs)",
                    flag(s.relay_healthy and s.projector_healthy))
        if s.projector:
            yield gauge("gateway_projector_lag_records", "Records on the bus not yet "
                        "applied by the hub projector", s.projector_lag_records)
            yield gauge("gateway_projector_lag_seconds", "How long the projector has had a "
                        "backlog (0: caught up)", s.projector_lag_seconds)
            yield counter("gateway_projector_applied", "Bus records applied by the hub "
                          "projector", s.projector_applied)
    return bus


def counters_source(failures: FailureCounters, mllp: Callable[[], Any],
                    over_budget: Callable[[], dict[str, int]]) -> Source:
    """The counts of ``GET /admin/counters``."""

    def counters() -> Iterable[Metric]:
        snapshot = failures.snapshot()
        yield counter("gateway_background_failures", "Inputs a background task (drop "
                      "folder, FHIR source, projector) could not handle",
                      labels=("component", "kind"),
                      labelled=[((component, kind), n) for component, facts in snapshot.items()
                                for kind, n in cast(dict[str, int], facts["by_kind"]).items()])
        budgets = over_budget()
        yield counter("gateway_ingest_over_budget", "Messages abandoned at a budget (time, "
                      "resources)", labels=("budget",),
                      labelled=[((b,), budgets.get(b, 0)) for b in ("time", "resources")])
        server = mllp()
        if server is not None:
            stats = asdict(server.stats)
            active = stats.pop("active")
            yield gauge("gateway_mllp_connections_open", "Open MLLP connections", active)
            yield counter("gateway_mllp_events", "MLLP listener events (connections, "
                          "frames, refused, timeouts…)", labels=("event",),
                          labelled=[((name,), n) for name, n in sorted(stats.items())])
    return counters


def alerts_source(alerts: Alerts) -> Source:
    def alert_gauges() -> Iterable[Metric]:
        current = alerts.current()
        yield gauge("gateway_alert_active", "1 per alert raised now (rule, site, severity)",
                    labels=("rule", "site", "severity"),
                    labelled=[((a.rule, a.site or "", a.severity), 1) for a in current])
        yield gauge("gateway_alerts", "Alerts raised now, by severity", labels=("severity",),
                    labelled=[((sev,), sum(a.severity == sev for a in current))
                              for sev in SEVERITIES])
    return alert_gauges

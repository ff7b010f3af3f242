"""``/metrics``: the Prometheus text format, one ``CollectorRegistry`` per running gateway
(never the library's global one: several gateways may run in one process, e.g. tests).

Two kinds of metric:

- events, counted where they happen: messages answered (``gateway_messages_total`` by site,
  message type, transport, status and ACK code), the ACK latency per site, mapping errors by
  reason (the error's type), API requests by FHIR interaction and status with their
  latency, lab-export rows by outcome;
- states, read at scrape time from their owners (``add_source``): outbox depth and bound,
  relay and projector lag, database and broker health, the failure counters of
  ``/admin/counters``, the alerts.

Labels carry site ids, message types, interactions, route areas, status codes, error type
names: never an id, a control id or a path with ids in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
log = logging.getLogger(__name__)

Source = Callable[[], Iterable[Metric]]


class _Sources(Collector):
    """Gauges and counters read from their owners at scrape time. A source that fails is
    left out of that scrape (logged by type only): one broken part must not blank /metrics."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in list(self.sources):
            try:
                yield from list(source())
            except Exception as exc:  # noqa: BLE001 - the other sources still answer
                log.warning("metrics source %s failed: %s", getattr(source, "__name__", "?"),
                            type(exc).__name__)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.messages = Counter(
            "gateway_messages", "HL7 v2 messages answered, by site, message type (MSH-9), "
            "transport, status and ACK code", ["site", "type", "transport", "status", "ack"],
            registry=r)
        self.ack_latency = Histogram(
            "gateway_ack_latency_seconds", "Receipt to acknowledgment of one message, per site",
            ["site"], buckets=LATENCY_BUCKETS, registry=r)
        self.mapping_errors = Counter(
            "gateway_mapping_errors", "Messages answered AE/AR, by site and reason (the "
            "error's type)", ["site", "reason"], registry=r)
        self.api_requests = Counter(
            "gateway_api_requests", "HTTP requests by interaction (FHIR interaction or area) "
            "and status", ["interaction", "status"], registry=r)
        self.api_latency = Histogram(
            "gateway_api_request_duration_seconds", "HTTP request duration by interaction",
            ["interaction"], buckets=LATENCY_BUCKETS, registry=r)
        self.labexport_rows = Counter(
            "gateway_labexport_rows", "Lab-export rows imported, by site and outcome "
            "(accepted, rejected)", ["site", "outcome"], registry=r)
        self._sources: list[Source] = []
        r.register(_Sources(self._sources))
        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}  # labels() is ~6 µs

    def add_source(self, source: Source) -> None:
        self._sources.append(source)

    def observe_message(self, site: str, message_type: str, transport: str, status: str,
                        ack: str, seconds: float, reason: str | None = None) -> None:
        key = (site, message_type, transport, status, ack)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.messages.labels(*key),
                                              self.ack_latency.labels(site))
        children[0].inc()
        children[1].observe(seconds)
        if reason is not None:
            self.mapping_errors.labels(site, reason).inc()

    def observe_request(self, interaction: str, status: int, seconds: float) -> None:
        self.api_requests.labels(interaction, str(status)).inc()
        self.api_latency.labels(interaction).observe(seconds)

    def observe_import(self, site: str, rows: int, accepted: int) -> None:
        self.labexport_rows.labels(site, "accepted").inc(accepted)
        self.labexport_rows.labels(site, "rejected").inc(max(0, rows - accepted))

    def exposition(self) -> bytes:
        """The text format of every metric (sources read now: call off the event loop)."""
        return generate_latest(self.registry)


def gauge(name: str, text: str, value: float | None = None,
          labelled: Iterable[tuple[Iterable[str], float]] = (),
          labels: Iterable[str] = ()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, value=value, labels=list(labels) or None)
    for values, number in labelled:
        family.add_metric(list(values), number)
    return family


def counter(name: str, text: str, value: float | None = None,
            labelled: Iterable[tuple[Iterable[str], float]] = (),
            labels: Iterable[str] = ()) -> CounterMetricFamily:
    family = CounterMetricFamily(name, text, value=value, labels=list(labels) or None)
    for values, number in labelled:
        family.add_metric(list(values), number)
    return family


def flag(ok: Any) -> float:
    return 1.0 if ok else 0.0

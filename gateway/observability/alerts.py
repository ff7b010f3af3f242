"""Alerts: conditions an operator must look at, evaluated every ``interval`` seconds.

- ``site-silent`` (site file ``alerts.silent_after_minutes``, ``working_hours``): no message
  from the site for more than N minutes of its working hours;
- ``error-rate`` (site file ``alerts.error_rate_percent`` over ``error_rate_window_minutes``,
  at least ``error_rate_min_messages``): more than X % of the site's messages got AE/AR;
- ``outbox-full`` (``--alert-outbox-percent``, 80): the outbox holds more than Y % of
  ``--outbox-max`` (critical once it is full: the ingest refuses);
- ``projector-lag`` (``--alert-projector-lag-seconds``, 300): the hub projector has had a
  backlog for longer than Z seconds;
- ``database-unavailable`` (always): the store does not answer.

``Alerts.current()`` is what the console, ``GET /admin/alerts`` and the alert gauges of
``/metrics`` show: the alerts of the last evaluation, each with the instant it was first
raised (``since``), kept while it holds. Messages name sites and numbers, never patient data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.ingest.outcome import instant
from gateway.observability.hours import parse_hours, working_seconds
from gateway.observability.watch import BusWatch
from gateway.store import observe

log = logging.getLogger(__name__)
ERRORS = ("error", "rejected")  # statuses answered AE/AR because of the message itself


@dataclass(frozen=True)
class Alert:
    rule: str
    site: str | None
    severity: str  # "warning" | "critical"
    since: str  # ISO instant the alert was first raised
    message: str  # no patient data


@dataclass(frozen=True)
class AlertSettings:
    outbox_percent: float = 80.0
    projector_lag_seconds: float = 300.0
    interval: float = 30.0


class Alerts:
    """``network``: the live site files (reloads are seen); ``store``: the edge store (None
    at a hub: no inbox, no site rules); ``bus``: a ``BusWatch`` or None."""

    def __init__(self, settings: AlertSettings, network: Any, store: Any,
                 bus: BusWatch | None = None, *, site_rules: bool = True,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.network = network
        self.store = store
        self.bus = bus
        self.site_rules = site_rules
        self.clock = clock
        self.started = clock()
        self.evaluated: str | None = None
        self._current: list[Alert] = []
        self._since: dict[tuple[str, str | None], str] = {}
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    def current(self) -> list[Alert]:
        with self._lock:
            return list(self._current)

    # --- evaluation ---------------------------------------------------------------------
    def evaluate(self) -> list[Alert]:
        """Check every rule now (database queries: call off the event loop)."""
        now = self.clock()
        raised: list[tuple[str, str | None, str, str]] = []
        if not observe.ping(self.store):
            raised.append(("database-unavailable", None, "critical",
                           "the database does not answer"))
        else:
            if self.site_rules:
                raised += self._site_alerts(now)
            if self.bus is not None:
                raised += self._bus_alerts()
        return self._keep(raised, now)

    def _keep(self, raised: list[tuple[str, str | None, str, str]],
              now: datetime) -> list[Alert]:
        alerts = []
        with self._lock:
            since = {}
            for rule, site, severity, message in raised:
                first = self._since.get((rule, site)) or instant(now)
                since[(rule, site)] = first
                alerts.append(Alert(rule, site, severity, first, message))
            self._since, self._current = since, alerts
            self.evaluated = instant(now)
        return list(alerts)

    def _site_alerts(self, now: datetime) -> list[tuple[str, str | None, str, str]]:
        sites = list(self.network.sites.values())
        silent = [s for s in sites if s.alerts.silent_after_minutes]
        rated = [s for s in sites if s.alerts.error_rate_percent]
        raised: list[tuple[str, str | None, str, str]] = []
        if silent:
            last = observe.last_received(self.store, [s.id for s in silent])
            for site in silent:
                raised += self._silence(site, last.get(site.id), now)
        by_window: dict[int, dict[str, Any]] = {}  # one query per distinct window
        for site in rated:
            window = site.alerts.error_rate_window_minutes
            if window not in by_window:
                by_window[window] = observe.outcomes_since(
                    self.store, instant(now - timedelta(minutes=window)))
            raised += self._error_rate(site, by_window[window].get(site.id))
        return raised

    def _silence(self, site: Any, last: str | None,
                 now: datetime) -> list[tuple[str, str | None, str, str]]:
        rule = site.alerts
        since = datetime.fromisoformat(last) if last else self.started
        spans = parse_hours(rule.working_hours) if rule.working_hours else None
        quiet = working_seconds(spans, site.timezone, since, now) / 60
        if quiet <= rule.silent_after_minutes:
            return []
        when = f"since {last}" if last else "since the gateway started"
        hours = f" of its working hours ({rule.working_hours})" if rule.working_hours else ""
        return [("site-silent", site.id, "warning",
                 f"site {site.id} sent no message for {int(quiet)} minutes{hours} ({when}); "
                 f"expected within {rule.silent_after_minutes}")]

    def _error_rate(self, site: Any, counts: Any) -> list[tuple[str, str | None, str, str]]:
        rule = site.alerts
        total = sum(counts.values()) if counts else 0
        if total < rule.error_rate_min_messages:
            return []
        errors = sum(counts.get(status, 0) for status in ERRORS)
        rate = 100.0 * errors / total
        if rate <= rule.error_rate_percent:
            return []
        return [("error-rate", site.id, "critical" if rate >= 50 else "warning",
                 f"site {site.id}: {errors} of {total} messages got AE/AR in the last "
                 f"{rule.error_rate_window_minutes} minutes ({rate:.0f}% > "
                 f"{rule.error_rate_percent:g}%)")]

    def _bus_alerts(self) -> list[tuple[str, str | None, str, str]]:
        assert self.bus is not None
        state = self.bus.state()
        raised: list[tuple[str, str | None, str, str]] = []
        if state.outbox_max and state.outbox_percent > self.settings.outbox_percent:
            severity = "warning" if state.accepting else "critical"
            raised.append(("outbox-full", None, severity,
                           f"the outbox holds {state.outbox_pending} of {state.outbox_max} "
                           f"rows ({state.outbox_percent:.0f}% > "
                           f"{self.settings.outbox_percent:g}%)"
                           + ("" if state.accepting else "; new messages are refused")))
        if state.projector and state.projector_lag_seconds > self.settings.projector_lag_seconds:
            raised.append(("projector-lag", None, "warning",
                           f"the hub projector has been {state.projector_lag_seconds:.0f} s "
                           f"behind ({state.projector_lag_records} records to apply; "
                           f"threshold {self.settings.projector_lag_seconds:g} s)"))
        return raised

    # --- the periodic task --------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name="alerts")
        return self._task

    async def run(self) -> None:
        while True:
            try:
                before = {(a.rule, a.site) for a in self.current()}
                alerts = await self._evaluate_off_loop()
                for alert in alerts:
                    if (alert.rule, alert.site) not in before:
                        log.warning("alert %s raised (%s): %s", alert.rule, alert.severity,
                                    alert.message)
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("alert evaluation failed: %s", type(exc).__name__)
            await asyncio.sleep(self.settings.interval)

    async def _evaluate_off_loop(self) -> list[Alert]:
        """``evaluate`` on a worker thread; cancelled (the gateway stops), it still waits
        for the thread's queries to end: the store is closed right after."""
        evaluation = asyncio.get_running_loop().run_in_executor(None, self.evaluate)
        try:
            return await asyncio.shield(evaluation)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await evaluation
            raise

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""The bus side as metrics and alerts see it: outbox depth against its bound, the age of
the oldest unpublished row (relay lag), the projector's backlog and for how long it has had
one (projector lag in seconds: since it last had nothing left to apply)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.store import observe


@dataclass(frozen=True)
class BusState:
    outbox_pending: int = 0
    outbox_max: int = 0
    accepting: bool = True
    relay_healthy: bool = True
    relay_lag_seconds: float = 0.0
    published: int = 0
    projector: bool = False  # a projector runs in this process
    projector_healthy: bool = True
    projector_lag_records: int = 0
    projector_lag_seconds: float = 0.0
    projector_applied: int = 0

    @property
    def outbox_percent(self) -> float:
        return 100.0 * self.outbox_pending / self.outbox_max if self.outbox_max else 0.0


class BusWatch:
    """Reads ``BusComponents`` (relay, projector) and the store's outbox. Thread-safe:
    /metrics and the alert loop read it from worker threads."""

    def __init__(self, components: Any, store: Any,
                 clock: Callable[[], float] = time.time) -> None:
        self.components = components
        self.store = store
        self.clock = clock
        self._behind_since: float | None = None
        self._lock = threading.Lock()

    def state(self) -> BusState:
        parts = self.components
        relay = getattr(parts, "relay", None)
        projector = getattr(parts, "projector", None)
        now = self.clock()
        values: dict[str, Any] = {}
        if relay is not None:
            values.update(outbox_pending=relay.pending, outbox_max=relay.outbox_max,
                          accepting=relay.accepting(), relay_healthy=relay.healthy,
                          published=relay.published,
                          relay_lag_seconds=self._relay_lag(now))
        if projector is not None:
            status = projector.status()
            lag = int(status.get("lag_total") or 0)
            values.update(projector=True, projector_healthy=status.get("last_error") is None,
                          projector_lag_records=lag, projector_applied=projector.applied,
                          projector_lag_seconds=self._projector_lag(now, lag))
        return BusState(**values)

    def _relay_lag(self, now: float) -> float:
        created = observe.oldest_unpublished(self.store)
        if created is None:
            return 0.0
        return max(0.0, now - datetime.fromisoformat(created).timestamp())

    def _projector_lag(self, now: float, backlog: int) -> float:
        with self._lock:
            if backlog <= 0:
                self._behind_since = None
                return 0.0
            if self._behind_since is None:
                self._behind_since = now
            return now - self._behind_since

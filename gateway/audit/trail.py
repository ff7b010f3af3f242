"""``AuditTrail``: the queue between the requests and the audit table.

A request only appends its ``Facts`` to a queue (a few hundred nanoseconds); one writer
thread comes by every 250 ms, builds the AuditEvents and appends them in one transaction
(``gateway.store.audit.AuditLog``). So recording costs the request nothing it waits for.

When the store cannot be written (down, locked), the events stay queued and the writer
retries with back-off; ``status()`` says so (``/healthz`` shows it). The queue is bounded:
once ``limit`` events wait, ``admits()`` is false and the middleware answers new requests
503 without running them, so that no access goes unrecorded. The requests refused so are
counted, and the count is written to the trail itself (an ``audit-overflow`` event) as soon
as the store takes events again. Lost are only the events still queued when the process
stops with the store down (logged as an error with their number) and, when the process
dies (kill -9, power loss), the events of its last round: at most INTERVAL of requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from gateway.audit.event import EventBuilder, Facts, system_facts
from gateway.errors import GatewayError
from gateway.store.audit import AuditLog

log = logging.getLogger(__name__)

LIMIT = 50_000  # queued events before new requests are refused (503)
BATCH = 5_000  # events per transaction, at most
INTERVAL = 0.25  # seconds between the writer's rounds: one transaction per round, not per
# request (waking the writer per request costs the event loop the GIL at every request)
RETRY_MAX = 5.0  # seconds between attempts while the store is down, at most


class AuditTrail:
    def __init__(self, log_: AuditLog, *, node: str, key: bytes, limit: int = LIMIT,
                 batch: int = BATCH) -> None:
        self.log = log_
        self.node = node
        self.builder = EventBuilder(node, key)
        self.limit = limit
        self.batch = batch
        self.pending: deque[Facts] = deque()
        self.written = 0
        self.refused = 0  # requests refused (503) because the queue was full
        self._refused_recorded = 0
        self.error: str | None = None  # why the last append failed
        self._wake = threading.Event()
        self._inflight = 0  # events taken from the queue, not yet committed
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the request side (event loop; must stay cheap) ------------------------------------------

    def admits(self) -> bool:
        return len(self.pending) < self.limit

    def record(self, facts: Facts) -> None:
        self.pending.append(facts)  # the writer comes by every INTERVAL: no wake-up here

    def refuse(self) -> None:
        self.refused += 1

    def status(self) -> dict[str, Any]:
        state = "ok" if self.error is None else "unavailable"
        if not self.admits():
            state = "full"
        return {"status": state, "pending": len(self.pending), "written": self.written,
                "refused": self.refused, **({"error": self.error} if self.error else {})}

    # -- the writer thread -----------------------------------------------------------------------

    def start(self) -> AuditTrail:
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (while the store takes it), then end the writer."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.pending:
            log.error("audit trail: %d events could not be written before stop",
                      len(self.pending))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (tests, orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while self.pending or self._inflight or self._refused_recorded < self.refused:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        """A round every INTERVAL (or when woken by ``flush``/``stop``): one transaction
        for what is queued; more at once only while a full batch waits (a backlog)."""
        delay = 0.05
        while True:
            self._wake.wait(timeout=INTERVAL)
            self._wake.clear()
            while self.pending or self._refused_recorded < self.refused:
                if not self._write_batch():
                    if self._stopping:
                        return
                    time.sleep(delay)
                    delay = min(RETRY_MAX, delay * 2)
                    continue
                delay = 0.05
                if len(self.pending) < self.batch and not self._stopping:
                    break
            if self._stopping and not self.pending:
                return

    def _write_batch(self) -> bool:
        self._inflight = n = min(self.batch, len(self.pending))
        taken = [self.pending.popleft() for _ in range(n)]
        refused = self.refused - self._refused_recorded
        facts = taken + ([self._overflow(refused)] if refused else [])
        try:
            built = [self._event(f) for f in facts]
            self.log.append([event for event, _ in built], [cols for _, cols in built])
        except Exception as exc:  # noqa: BLE001 - the writer must outlive any failure
            self.pending.extendleft(reversed(taken))
            self._inflight = 0
            why = exc.message if isinstance(exc, GatewayError) else type(exc).__name__
            if self.error is None:
                log.warning("audit trail: the store takes no events (%s); %d queued",
                            why, len(self.pending))
            self.error = why
            return False
        if self.error is not None:
            log.warning("audit trail: the store takes events again")
        self.error = None
        self.written += len(facts)
        self._refused_recorded += refused
        self._inflight = 0
        return True

    def _event(self, facts: Facts) -> tuple[dict[str, Any], dict[str, Any]]:
        """The AuditEvent of ``facts``; should building it fail (a bug), an event that
        says so takes its place, so that the access is still on the trail."""
        try:
            return self.builder.build(facts)
        except Exception as exc:  # noqa: BLE001 - never lose an access to a bug
            log.error("audit trail: cannot build the event of %s (status %d): %s",
                      facts.method, facts.status, type(exc).__name__)
            return self.builder.build(system_facts(
                "audit-record-error", ok=False, when=time.time(), agent=str(facts.agent),
                description=f"{facts.method} request answered {facts.status}: its event "
                            f"could not be built ({type(exc).__name__})"))

    def _overflow(self, refused: int) -> Facts:
        return system_facts("audit-overflow", ok=False, when=time.time(), agent=self.node,
                            description=f"{refused} requests refused with 503: the audit "
                                        f"queue held {self.limit} events")

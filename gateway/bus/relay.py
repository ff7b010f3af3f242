"""The outbox relay: committed outbox rows → bus records, marked published only once acked.

One task. It reads the oldest unpublished rows (commit order), publishes them as one batch
(the bus keeps per-key order), and marks them published after the broker acknowledged the
whole batch. A failed batch is retried whole, after an exponential backoff with full
jitter; a record may then appear twice on the bus (consumers ignore a version they hold),
never zero times. ``notify()`` wakes the relay as soon as the ingest committed new rows;
without it the relay still polls (rows written by other processes, e.g. the API).

Backpressure: ``accepting()`` is False while the pending rows exceed ``outbox_max``; the
ingest then answers AE/CE with ERR-3 207 and stores nothing new.

Retention: published rows stay (an edge's outbox is its history, see
``gateway.store.profile``) for ``retention_days``, then the relay deletes them, every
``prune_interval`` seconds, in batches between its drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.bus.base import (
    CONTENT_TYPE,
    Bus,
    BusRecord,
    cancel_task,
    new_traceparent,
    topic_for,
)
from gateway.errors import GatewayError
from gateway.store import OutboxRow, Store

log = logging.getLogger(__name__)


def record_for(row: OutboxRow, *, prefix: str, origin: str) -> BusRecord:
    """The bus record of one outbox row: topic per type, key ``Type/id``, standard headers."""
    headers = {"content-type": CONTENT_TYPE, "origin": origin, **row.headers,
               "version-id": str(row.version_id)}
    headers.setdefault("traceparent", new_traceparent())
    return BusRecord(topic_for(row.resource_type, prefix), row.key, row.payload, headers)


class OutboxRelay:
    def __init__(self, store: Store, bus: Bus, *, prefix: str = "gateway", origin: str = "",
                 batch_size: int = 500, max_backoff: float = 30.0, outbox_max: int = 100_000,
                 poll_interval: float = 1.0, min_backoff: float = 0.2,
                 retention_days: float = 30.0, prune_interval: float = 600.0,
                 topics: Sequence[str] = ()) -> None:
        self.store = store
        self.bus = bus
        self.prefix = prefix
        self.origin = origin
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self.min_backoff = min_backoff
        self.outbox_max = outbox_max
        self.poll_interval = poll_interval
        self.topics = list(topics)  # resource types whose topics are created at start
        self.retention_days = retention_days  # published rows kept this long (0: forever)
        self.prune_interval = prune_interval
        self.pruned = 0
        self._pruned_at = 0.0
        self.pending = 0
        self.published = 0
        self.last_error: str | None = None
        self.last_success: float | None = None
        self._failures = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counted = 0.0
        self._task: asyncio.Task[None] | None = None
        self.tracer: Any = None  # gateway.observability.tracing.Tracing, when --otel

    # the ingest's side ------------------------------------------------------------
    def notify(self, rows: int = 1) -> None:
        """New outbox rows were committed: publish them now. Safe from any thread (the
        ingest's writer thread calls it after its commit)."""
        self.pending += rows
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def accepting(self) -> bool:
        """False when the outbox holds more than ``outbox_max`` unpublished rows. While the
        bus is failing the count is re-read from the store (at most five times a second),
        so the bound holds within a fifth of a second of traffic."""
        stale = time.monotonic() - self._counted > 0.2
        if stale and (not self.healthy or self.pending >= self.outbox_max):
            with contextlib.suppress(GatewayError):  # the store answers for itself
                self._count()
        return self.pending < self.outbox_max

    def _count(self) -> None:
        self.pending = self.store.outbox_pending()
        self._counted = time.monotonic()

    @property
    def healthy(self) -> bool:
        return self.last_error is None

    def status(self) -> dict[str, object]:
        return {"pending": self.pending, "published": self.published,
                "healthy": self.healthy, "accepting": self.accepting(),
                "last_error": self.last_error, "last_success": self.last_success,
                "outbox_max": self.outbox_max, "pruned": self.pruned,
                "retention_days": self.retention_days}

    # the task ------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._count)
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    async def run(self) -> None:
        await self._prepare()
        while True:
            self._wake.clear()
            try:
                sent = await self.drain_once()
            except GatewayError as exc:
                await self._failed(exc)
                continue
            except Exception as exc:
                log.exception("relay: unexpected failure; retrying")  # keep relaying
                await self._failed(GatewayError(f"unexpected {type(exc).__name__}"))
                continue
            if sent < self.batch_size:
                await self._sleep_until_woken(self.poll_interval)

    async def _prepare(self) -> None:
        """Connect and create the topics, retrying in the background: Kafka being down
        never stops the gateway from starting (the outbox just grows)."""
        while True:
            try:
                await self.bus.start()
                await self.bus.ensure_topics(self.topics)
                return
            except GatewayError as exc:
                await self._failed(exc)

    async def drain_once(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        rows: Sequence[OutboxRow] = await asyncio.to_thread(self.store.outbox_fetch,
                                                            self.batch_size)
        if rows:
            records = [record_for(r, prefix=self.prefix, origin=self.origin) for r in rows]
            spans = self.tracer.relay_spans(records) if self.tracer is not None else ()
            await self.bus.publish(records)
            if spans:
                self.tracer.end(spans)
            await asyncio.to_thread(self.store.outbox_mark_published, [r.seq for r in rows])
            self.published += len(rows)
            self.pending = max(0, self.pending - len(rows))  # before the recount: no window
            # in which the store is drained but the bound still refuses
        await asyncio.to_thread(self._count)
        self._succeeded()
        if time.monotonic() - self._pruned_at >= self.prune_interval:
            await self.prune()
        return len(rows)

    async def prune(self) -> int:
        """Delete published rows older than the retention (in batches, between drains)."""
        self._pruned_at = time.monotonic()
        if self.retention_days <= 0:
            return 0
        cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
        before = cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        deleted = 0
        while (n := await asyncio.to_thread(self.store.outbox_prune, before)) > 0:
            deleted += n
        if deleted:
            self.pruned += deleted
            log.info("relay: deleted %d published outbox rows older than %s days", deleted,
                     self.retention_days)
        return deleted

    async def drain(self) -> None:
        """Publish until the outbox is empty (tests, shutdown, the replay command)."""
        while await self.drain_once() == self.batch_size:
            pass

    def _succeeded(self) -> None:
        if self.last_error is not None:
            log.info("bus reachable again; relaying %d pending rows", self.pending)
        self.last_error = None
        self.last_success = time.time()
        self._failures = 0

    async def _failed(self, exc: GatewayError) -> None:
        self._failures += 1
        self.last_error = str(exc)
        with contextlib.suppress(GatewayError):
            await asyncio.to_thread(self._count)
        delay = self.backoff(self._failures)
        log.warning("relay failed (%s); retry %d in %.1fs", exc, self._failures, delay)
        await asyncio.sleep(delay)

    def backoff(self, failures: int) -> float:
        """Exponential backoff with full jitter, capped at ``max_backoff``."""
        ceiling = min(self.max_backoff, self.min_backoff * 2 ** min(failures, 30))
        return random.uniform(self.min_backoff, max(ceiling, self.min_backoff))

    async def _sleep_until_woken(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

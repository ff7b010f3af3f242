"""The hub projector: bus records → the hub store, offsets committed after the store commit.

One batch from the consumer becomes one store transaction (records in log order per
partition), then the offsets are committed. A crash between the two re-delivers the batch,
which is harmless: ``apply_version`` ignores a version the store already holds (same or
older ``meta.versionId``), and a tombstone deletes only a current version older than the
delete's ``version-id``. A rebalance that refuses the commit is harmless for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import orjson

from gateway.bus.base import Consumer, Delivery, TopicPartition, cancel_task
from gateway.errors import GatewayError
from gateway.store.base import Store, Transaction

log = logging.getLogger(__name__)

HUB_RESOURCE_TYPES = ("Organization", "Patient", "ResearchStudy", "ResearchSubject",
                      "Specimen", "Observation", "Provenance")


def apply_delivery(tx: Transaction, record: Delivery) -> bool:
    """Write one record into the store; True when something changed."""
    if record.value is not None:
        return tx.apply_version(orjson.loads(record.value)).changed
    resource_type, _, id = record.key.partition("/")
    version = record.headers.get("version-id")
    return tx.apply_delete(resource_type, id,
                           version_id=int(version) if version else None).changed


def apply_batch(tx: Transaction, records: Sequence[Delivery]) -> int:
    """Every record in order; runs of versions in one batch write when the store has one
    (``apply_versions``), tombstones one by one. Returns how many changed something."""
    batch_write = getattr(tx, "apply_versions", None)
    if batch_write is None:
        return sum(apply_delivery(tx, r) for r in records)
    changed, run = 0, []
    for record in records:
        if record.value is not None:
            run.append(orjson.loads(record.value))
            continue
        changed += int(batch_write(run)) if run else 0
        run = []
        changed += apply_delivery(tx, record)
    return changed + (int(batch_write(run)) if run else 0)


def next_offsets(records: Sequence[Delivery]) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    for r in records:
        out[r.tp] = max(out.get(r.tp, 0), r.offset + 1)
    return out


class HubProjector:
    def __init__(self, consumer: Consumer, store: Store, *, batch_size: int = 1000,
                 min_backoff: float = 0.2, max_backoff: float = 10.0) -> None:
        self.consumer = consumer
        self.store = store
        self.batch_size = batch_size
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.applied = 0
        self.changed = 0
        self.last_error: str | None = None
        self.last_applied: float | None = None
        self.poisoned: list[str] = []  # key@partition:offset of records skipped as unusable
        self._held: list[Delivery] = []  # fetched, not yet in the store: retried first
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="hub-projector")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)
        with contextlib.suppress(GatewayError):
            await self.consumer.stop()

    async def run(self) -> None:
        await self._start_consumer()
        failures = 0
        while True:
            try:
                await self.step()
                failures, self.last_error = 0, None
            except GatewayError as exc:
                failures += 1
                self.last_error = str(exc)
                delay = min(self.max_backoff, self.min_backoff * 2 ** min(failures, 30))
                log.warning("projector step failed (%s); retry in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _start_consumer(self) -> None:
        delay = self.min_backoff
        while True:
            try:
                await self.consumer.start()
                return
            except GatewayError as exc:
                self.last_error = str(exc)
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)

    async def step(self, max_wait: float = 1.0) -> int:
        """Fetch, apply and commit one batch; returns how many records it held."""
        records = self._held or await self.consumer.getmany(max_wait=max_wait,
                                                            max_records=self.batch_size)
        if not records:
            return 0
        self._held = records
        self.changed += await asyncio.to_thread(self._apply, records)
        self._held = []
        self.applied += len(records)
        self.last_applied = time.time()
        await self.consumer.commit(next_offsets(records))  # refused after a rebalance: the
        return len(records)  # new owner re-reads from the last commit, a harmless no-op

    def _apply(self, records: Sequence[Delivery]) -> int:
        try:
            with self.store.transaction() as tx:
                return apply_batch(tx, records)
        except GatewayError:
            raise  # the store or the database: retried with backoff
        except Exception:  # noqa: BLE001 - a record the store cannot take: find it, skip it
            return self._apply_one_by_one(records)

    def _apply_one_by_one(self, records: Sequence[Delivery]) -> int:
        """A poison record (a value the index cannot hold…) must not stop the partition:
        every other record of the batch is applied, the bad one is logged (key and offset,
        never content) and counted in ``status()['poisoned']``."""
        changed = 0
        for record in records:
            try:
                with self.store.transaction() as tx:
                    changed += apply_batch(tx, [record])
            except GatewayError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.poisoned.append(f"{record.key}@{record.tp}:{record.offset}")
                log.error("projector skipped record %s at %s offset %d: %s", record.key,
                          record.tp, record.offset, type(exc).__name__)
        return changed

    def status(self) -> dict[str, object]:
        lag = self.consumer.lag()
        return {"lag": lag, "lag_total": sum(lag.values()), "applied": self.applied,
                "changed": self.changed, "last_error": self.last_error,
                "poisoned": self.poisoned[-20:],
                "last_applied": self.last_applied}

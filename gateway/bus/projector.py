"""The hub projector: bus records → the hub store, offsets committed after the store commit.

One chunk of records from the consumer becomes one store transaction (records in log order
per partition), then the offsets are committed. A crash between the two re-delivers the
chunk, which is harmless: ``apply_version`` ignores a version the store already holds (same
or older ``meta.versionId``), and a tombstone deletes only a current version older than the
delete's ``version-id``. A rebalance that refuses the commit is harmless for the same reason.

While the store writes one chunk, the next one (what the consumer already holds) is fetched,
decoded and prepared (``prepare_chunk``: ``Store.prepare_versions``, no database), so that
both cores work, one in the database and one here. The prepared chunk is written by the
next step, after this one's store commit and offset commit: the order is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from gateway.bus.base import Consumer, Delivery, TopicPartition, cancel_task
from gateway.errors import GatewayError
from gateway.store import PreparedVersions, Resource, Store, Transaction

log = logging.getLogger(__name__)
POISON_KEPT = 100  # skipped records named in memory (status shows the last 20)

HUB_RESOURCE_TYPES = ("Organization", "Patient", "ResearchStudy", "ResearchSubject",
                      "Specimen", "Observation", "Provenance")
# what the relay publishes: also the hub's study cohorts (``gateway.store.cohort``), which
# are never projected (every hub store derives its own from the subjects it holds)
RELAYED_TYPES = (*HUB_RESOURCE_TYPES, "Group")

# a run of versions (as ``Transaction.apply_versions`` takes them), or a tombstone
Segment = PreparedVersions | Sequence[Resource] | Delivery


def apply_delivery(tx: Transaction, record: Delivery) -> bool:
    """Write one record into the store; True when something changed."""
    if record.value is not None:
        return tx.apply_version(orjson.loads(record.value)).changed
    resource_type, _, id = record.key.partition("/")
    version = record.headers.get("version-id")
    return tx.apply_delete(resource_type, id,
                           version_id=int(version) if version else None).changed


def apply_chunk(tx: Transaction, records: Sequence[Delivery]) -> int:
    """Every record in order: each run of versions in one ``apply_versions`` (a few
    statements), tombstones one by one. Records that cannot even be decoded go one by one:
    the bad one raises there. Returns how many changed something."""
    try:
        segments = _segments(records, None)
    except Exception:  # noqa: BLE001 - found record by record just below
        return sum(apply_delivery(tx, r) for r in records)
    return apply_segments(tx, segments)


class Chunk(list[Delivery]):
    """Records fetched together, with their store writes prepared before the transaction
    (``segments``; None when preparing failed: the records are then applied as they are,
    which fails in the transaction and finds the poison record)."""

    def __init__(self, records: Sequence[Delivery], segments: list[Segment] | None) -> None:
        super().__init__(records)
        self.segments = segments


def prepare_chunk(store: Store, records: Sequence[Delivery]) -> Chunk:
    """``apply_chunk``'s work that needs no database, done for ``records``: runs of versions
    decoded and prepared by the store, tombstones as they are."""
    try:
        return Chunk(records, _segments(records, store.prepare_versions))
    except Exception:  # noqa: BLE001 - a record no transaction can take: found in _apply
        return Chunk(records, None)


def _segments(records: Sequence[Delivery],
              prepare: Callable[[Sequence[Resource]], Any] | None) -> list[Segment]:
    segments: list[Segment] = []
    run: list[Resource] = []
    for record in records:
        if record.value is not None:
            run.append(orjson.loads(record.value))
            continue
        if run:
            segments.append(prepare(run) if prepare else run)
            run = []
        segments.append(record)
    if run:
        segments.append(prepare(run) if prepare else run)
    return segments


def apply_segments(tx: Transaction, segments: Sequence[Segment]) -> int:
    """``apply_chunk`` of decoded (or prepared) segments (same outcome)."""
    changed = 0
    for segment in segments:
        if isinstance(segment, Delivery):
            changed += apply_delivery(tx, segment)
        else:
            changed += tx.apply_versions(segment)
    return changed


GIVE_WAY_STEP = 0.01  # s between looks at the ingest while giving way
AHEAD_POLL = 0.01  # s between look-ahead polls while a write runs


def next_offsets(records: Sequence[Delivery]) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    for r in records:
        out[r.tp] = max(out.get(r.tp, 0), r.offset + 1)
    return out


class HubProjector:
    """``chunk_size``: records per fetch and store transaction. 2,000 rather than 1,000: each
    chunk costs ~30 database round trips and a commit whatever its size (bench/bus.py:
    ~5.5k → ~7k resources/s on PostgreSQL); a chunk is that large only while there is a
    backlog, when the latency is the backlog's anyway."""

    def __init__(self, consumer: Consumer, store: Store, *, chunk_size: int = 2000,
                 min_backoff: float = 0.2, max_backoff: float = 10.0) -> None:
        self.consumer = consumer
        self.store = store
        self.chunk_size = chunk_size
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.applied = 0
        self.changed = 0
        self.chunks = 0  # store transactions committed
        self.last_error: str | None = None
        self.last_applied: float | None = None
        self.poisoned: list[str] = []  # key@partition:offset of the last records skipped
        self.poisoned_total = 0  # all skipped (the list keeps the last POISON_KEPT only)
        self.unexpected = 0  # steps that failed with a non-gateway error (a bug), retried
        self._held: list[Delivery] = []  # fetched, not yet in the store: retried first
        self._next: Chunk | None = None  # fetched and prepared during the last write: next
        self.busy: Callable[[], bool] = lambda: False  # role all: senders are waiting
        # s to wait after a chunk smaller than chunk_size (0: none): fewer, larger hub
        # commits under a steady load, at the cost of that much more ACK → visible
        self.linger = 0.0
        self.max_give_way = 1.0
        self.gave_way = 0.0  # seconds, in all
        self._done: dict[TopicPartition, int] = {}  # offsets this projector committed
        self._progress = asyncio.Event()  # set (and replaced) after each commit
        self._task: asyncio.Task[None] | None = None
        self.tracer: Any = None  # gateway.observability.tracing.Tracing, when --otel

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
                applied = await self.step()
                failures, self.last_error = 0, None
                if 0 < applied < self.chunk_size and self.linger:
                    await asyncio.sleep(self.linger)  # let the next chunk fill up
                continue
            except GatewayError as exc:
                self.last_error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a bug must not end the projection
                self.last_error = f"unexpected {type(exc).__name__}"
                self.unexpected += 1
            failures += 1
            delay = min(self.max_backoff, self.min_backoff * 2 ** min(failures, 30))
            log.warning("projector step failed (%s); retry in %.1fs", self.last_error, delay)
            await asyncio.sleep(delay)

    async def _start_consumer(self) -> None:
        delay = self.min_backoff
        while True:
            try:
                await self.consumer.start()
                return
            except GatewayError as exc:
                self.last_error = str(exc)
            except Exception as exc:  # noqa: BLE001 - keep trying: the hub must come up
                self.last_error = f"unexpected {type(exc).__name__}"
                self.unexpected += 1
            await asyncio.sleep(delay)
            delay = min(self.max_backoff, delay * 2)

    async def step(self, max_wait: float = 1.0) -> int:
        """Fetch, apply and commit one chunk; returns how many records it held. While the
        store writes it, the next chunk is fetched and prepared (kept for the next step)."""
        if not self._held:
            self._held, self._next = self._next or await self._fetch(max_wait), None
        records = self._held
        if not records:
            return 0
        await self._give_way()
        # submitted now (a to_thread task would start only after the look-ahead's fetch)
        started = time.time_ns()
        writing = asyncio.get_running_loop().run_in_executor(None, self._apply, records)
        try:
            await self._fetch_ahead(writing)
        except asyncio.CancelledError:  # stopping: the write in progress ends first (its
            await asyncio.wait({writing})  # outcome, whatever it is, is the next start's)
            raise
        changed = await writing
        if self.tracer is not None:
            self.tracer.applied(records, started)
        self.changed += changed
        self._held = []
        self.applied += len(records)
        self.chunks += 1
        self.last_applied = time.time()
        offsets = next_offsets(records)
        await self.consumer.commit(offsets)  # refused after a rebalance: the new owner
        self._done.update(offsets)  # re-reads from the last commit, a harmless no-op
        self._progress.set()
        self._progress = asyncio.Event()
        return len(records)

    async def _give_way(self) -> None:
        """Role all, one process: while senders wait for the ingest's writer (``busy``),
        the write waits too, up to ``max_give_way`` seconds: the ACKs come first, and the
        projection catches up in larger chunks once the burst is over. Under a load the
        ingest keeps up with, ``busy`` is rarely true and nothing waits."""
        waited = 0.0
        while self.busy() and waited < self.max_give_way:
            await asyncio.sleep(GIVE_WAY_STEP)
            waited += GIVE_WAY_STEP
        self.gave_way += waited

    async def caught_up(self, recheck: float = 0.5) -> None:
        """Return once the records on the bus when called are in the store (offsets
        committed). Without progress for ``recheck`` seconds the log is asked again: a
        partition another member committed (after a rebalance) is no longer waited for."""
        target = await self.consumer.behind()
        while any(self._done.get(tp, 0) < end for tp, end in target.items()):
            progress = self._progress
            try:
                await asyncio.wait_for(progress.wait(), recheck)
            except TimeoutError:
                still = await self.consumer.behind()
                target = {tp: end for tp, end in target.items() if tp in still}

    async def _fetch(self, max_wait: float) -> Chunk:
        records = await self.consumer.getmany(max_wait=max_wait, max_records=self.chunk_size)
        if not records:
            return Chunk([], [])
        return await asyncio.to_thread(prepare_chunk, self.store, records)

    async def _fetch_ahead(self, writing: asyncio.Future[int]) -> None:
        """The next chunk, prepared while ``writing`` runs: what the consumer already holds,
        or what it gets before the write ends (polled: the consumer asks the broker for more
        only once it holds nothing, and that answer lands within milliseconds). A failed
        fetch is left to the next step's own fetch, which reports it."""
        while self._next is None:
            try:
                self._next = await self._fetch(0) or None
            except Exception as exc:  # noqa: BLE001 - never the current chunk's concern
                log.debug("projector look-ahead fetch failed: %s", type(exc).__name__)
                return
            if self._next is not None or writing.done():
                return
            await asyncio.wait({writing}, timeout=AHEAD_POLL)

    def _apply(self, records: Sequence[Delivery]) -> int:
        try:
            with self.store.transaction() as tx:
                if isinstance(records, Chunk) and records.segments is not None:
                    return apply_segments(tx, records.segments)
                return apply_chunk(tx, records)
        except GatewayError:
            raise  # the store or the database: retried with backoff
        except Exception:  # noqa: BLE001 - a record the store cannot take: find it, skip it
            return self._apply_one_by_one(records)

    def _apply_one_by_one(self, records: Sequence[Delivery]) -> int:
        """A poison record (a value the index cannot hold…) must not stop the partition:
        every other record of the chunk is applied, the bad one is logged (key and offset,
        never content) and counted in ``status()['poisoned']``."""
        changed = 0
        for record in records:
            try:
                with self.store.transaction() as tx:
                    changed += apply_chunk(tx, [record])
            except GatewayError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.poisoned.append(f"{record.key}@{record.tp}:{record.offset}")
                self.poisoned_total += 1
                del self.poisoned[:-POISON_KEPT]  # a stream of bad records must not grow it
                log.error("projector skipped record %s at %s offset %d: %s", record.key,
                          record.tp, record.offset, type(exc).__name__)
        return changed

    def status(self) -> dict[str, object]:
        lag = self.consumer.lag()
        return {"lag": lag, "lag_total": sum(lag.values()), "applied": self.applied,
                "changed": self.changed, "chunks": self.chunks,
                "last_error": self.last_error,
                "poisoned": self.poisoned[-20:], "poisoned_total": self.poisoned_total,
                "unexpected_failures": self.unexpected,
                "gave_way_seconds": round(self.gave_way, 1),
                "last_applied": self.last_applied}

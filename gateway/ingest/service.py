"""The way of one message: raw bytes → inbox → parse → site → map → store → ACK.

``IngestService.handle`` is what the MLLP listener, ``POST /hl7v2`` and the file importers
call. Processing happens on one writer thread that takes every message waiting in its queue
and commits them in ONE transaction (group commit), each inside its own savepoint, so a
failing message never takes the good ones with it. The acknowledgment is built only after
that commit: AA/CA means "stored durably".

Idempotency: the inbox is unique on (MSH-3, MSH-4, MSH-10); the same message again gets the
answer stored with the first one and has no second effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from gateway.adapters import hooks
from gateway.adapters.governance import hl7_unmapped
from gateway.adapters.loader import Network
from gateway.adapters.site import Site
from gateway.errors import (
    BudgetExceeded,
    ConfigError,
    InboundError,
    Overloaded,
    ParseError,
    StoreError,
    UnknownSite,
)
from gateway.hl7 import ack as acks
from gateway.hl7.parser import Message, parse, split_messages
from gateway.ingest import rekey
from gateway.ingest.group import Group, merge_links, wanted
from gateway.ingest.outcome import (
    COMMIT_FOR,
    Clock,
    Job,
    Mapped,
    Outcome,
    join_frames,
    utc_now,
)
from gateway.mapping import map_message
from gateway.mapping.context import report_outcome
from gateway.mapping.provenance import message_hash
from gateway.store.base import Change, InboxRecord, Resource, Store, Transaction

log = logging.getLogger(__name__)
# told of every message that ``handle`` answered: (raw, transport, outcome, seconds)
Observer = Callable[[bytes, str, Outcome, float], None]
EXPORT_SENDER = "LAB-EXPORT"  # = gateway.adapters.labexport.importer.SENDER_APPLICATION


class IngestService:
    def __init__(self, store: Store, network: Network, pseudonym_key: bytes, *,
                 node_id: str = "gateway", clock: Clock = utc_now, batch_max: int = 64,
                 accepting: Callable[[], bool] = lambda: True,
                 on_commit: Callable[[int], None] = lambda rows: None,
                 strict_check: Callable[[str], Sequence[InboundError]] | None = None,
                 message_time_budget: float | None = 10.0,
                 max_resources: int | None = 5_000) -> None:
        self.store = store
        self.network = network
        self.key = pseudonym_key
        self.node_id = node_id
        self.clock = clock
        self.batch_max = batch_max
        self.accepting = accepting
        self.on_commit = on_commit
        self.strict_check = strict_check
        # seconds one message may spend in mapping before it is abandoned (AE, stored as an
        # error): the writer thread serves every sender, so no message may hold it longer
        self.message_time_budget = message_time_budget
        # messages abandoned at a budget, by budget ("time", "resources"): /admin/counters
        self.over_budget: Counter[str] = Counter()
        # resources one message may write: the store write (~0.1–0.3 ms each) happens on the
        # writer thread too, and the time budget covers only the mapping
        self.max_resources = max_resources
        # meta.source names this node, not the site: resources shared by sites (a
        # ResearchStudy, a Patient known by codice fiscale) must not flip with every sender.
        self.source = f"urn:plagencell:node:{node_id}"
        self.observers: list[Observer] = []
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="ingest-writer",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Finish every queued message, then stop the writer thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    # --- entry points -------------------------------------------------------------------
    async def handle(self, raw: bytes, transport: str = "mllp") -> Outcome:
        """Process one message on the writer thread; resolves after the commit. Each of
        ``observers`` (metrics, tracing) is then told the message, its outcome and the
        seconds from receipt to the answer."""
        started = time.perf_counter()
        outcome = await self._enqueue(raw, transport, None)
        for observe in self.observers:
            try:
                observe(raw, transport, outcome, time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - metrics never cost a sender its ACK
                log.warning("message observer failed: %s", type(exc).__name__)
        return outcome

    async def replay_async(self, record: InboxRecord) -> Outcome:
        if record.sender_application == EXPORT_SENDER:
            return await asyncio.to_thread(self._reimport, record)
        return await self._enqueue(record.raw, record.transport, record)

    async def _enqueue(self, raw: bytes, transport: str,
                       replay_of: InboxRecord | None) -> Outcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def done(outcome: Outcome) -> None:
            loop.call_soon_threadsafe(_resolve, future, outcome)

        checked = await asyncio.to_thread(self._precheck, raw) if self._any_strict() else None
        self.start()
        self._queue.put(Job(raw, transport, done, replay_of, checked=checked))
        return await future

    def _any_strict(self) -> bool:
        return self.strict_check is not None and any(
            site.strict_validation for site in self.network.sites.values())

    def _precheck(self, raw: bytes) -> Sequence[InboundError] | None:
        """Strict validation (hl7apy: ~10 ms per segment) on a worker thread, before the
        message reaches the writer: a large message on a strict site must not hold the
        writer that every sender waits on. None: not a strict site's message (or not
        readable: the writer answers that)."""
        try:
            site = self.network.site_for(parse(raw).sending_facility)
        except ParseError:
            return None
        if site is None or not site.strict_validation:
            return None
        try:
            return self._strict(site, raw)
        except Exception:  # noqa: BLE001 - the writer checks again and answers what it finds
            return None

    def replay(self, record: InboxRecord) -> Outcome:
        """Re-map a stored message with the current mapping and site files (synchronously:
        for ``gateway replay``; the server uses ``replay_async`` through the writer)."""
        if record.sender_application == EXPORT_SENDER:
            return self._reimport(record)
        result: list[Outcome] = []
        self._run_group([Job(record.raw, record.transport, result.append, replay_of=record)])
        return result[0]

    def _reimport(self, record: InboxRecord) -> Outcome:
        """A lab-export file is replayed through the importer, not the HL7 path."""
        from gateway.adapters.labexport.importer import reimport

        try:
            report = reimport(self.store, self.network, record, self.key)
        except (ConfigError, StoreError) as exc:
            log.warning("lab export %s not replayed: %s", record.id, exc)
            return Outcome("error", "AE", [], record.id)
        status = "rejected" if report.error else "processed"  # bad rows: in its report
        return Outcome(status, "AR" if report.error else "AA", [], record.id,
                       report.created + report.updated + report.retired, report.retired)

    # --- the writer thread ---------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            group = [job]
            stop = False
            while len(group) < self.batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            self._run_group_or_refuse(group)
            if stop:
                return

    def _run_group_or_refuse(self, jobs: list[Job]) -> None:
        """The writer thread must outlive any group: a failure outside the transaction (a
        commit hook, an answer callback) is answered "resend later" to whoever still waits
        (a resend of a stored message gets its stored answer)."""
        try:
            self._run_group(jobs)
        except Exception as exc:  # noqa: BLE001 - the one writer serves every sender
            log.error("ingest writer: a group of %d failed outside its transaction (%s)",
                      len(jobs), type(exc).__name__)
            for job in jobs:
                try:
                    outcome = self._store_failure(job, exc)
                except Exception:  # noqa: BLE001 - not even its MSH is usable: a bare AE
                    outcome = self._store_failure(Job(b"", job.transport, job.done), exc)
                with contextlib.suppress(Exception):
                    job.done(outcome)

    def _run_group(self, jobs: list[Job]) -> None:
        outcomes: list[Outcome] = []
        started = time.time_ns()
        try:
            with self.store.transaction() as tx:
                outcomes = Group(self, tx, jobs).run()
        except Exception as exc:  # noqa: BLE001 - the database failed: nothing was stored
            log.exception("group commit of %d message(s) failed", len(jobs))
            outcomes = [self._store_failure(job, exc) for job in jobs]
        else:
            committed = (started, time.time_ns())
            for outcome in outcomes:
                outcome.commit_ns = committed
            rows = sum(o.changed for o in outcomes)  # one outbox row per changed resource
            if rows:
                self.on_commit(rows)
        for job, outcome in zip(jobs, outcomes, strict=True):
            job.done(outcome)

    # --- one message (the steps a ``Group`` runs) ---------------------------------------
    def accept(self, tx: Transaction, job: Job, msg: Message, received: str,
                links: dict[str, str], lookup: Callable[[str], str | None], *,
                defer: bool = False) -> Outcome | Mapped:
        """Map one message (``lookup``: pseudonym links, the group's first); commit it in
        its own savepoint, or (``defer``) hand the mapping back for the group write."""
        site = self.network.site_for(msg.sending_facility)
        err: InboundError
        if site is None:
            err = UnknownSite("MSH-4 sending facility is not a configured site: send the "
                              "facility agreed with the network team, or have it added to "
                              "the site file; resend after the fix", segment="MSH", field=4)
            return self.reject(tx, job, msg, err, received)
        if not msg.control_id:
            err = ParseError("MSH-10 message control id is missing: send a control id "
                             "unique to each message", segment="MSH", field=10, code="101")
            return self.reject(tx, job, msg, err, received)
        if job.replay_of is None and not self.accepting():
            refusal = Overloaded("the gateway is temporarily unable to accept messages: "
                                 "the outbound queue is full; resend later",
                                 segment="MSH", field=10)
            return Outcome("refused", "AE", self._acks(msg, [refusal], retriable=True))
        try:
            errors = job.checked if job.checked is not None else self._strict(site, job.raw)
            if errors:
                raise errors[0]
            if site.adapter:
                msg = parse(hooks.before_mapping(site, job.raw))
            result = map_message(msg, site, pseudonym_key=self.key, received=received,
                                 studies=self.network.studies, lookup_link=lookup,
                                 checkpoint=self._budget(), max_resources=self.max_resources)
            if site.adapter:
                result.resources = hooks.after_mapping(site, result.resources)
            mapped = Mapped(job, msg, site, result, received)
            if defer:
                links.update(result.new_links)
                return mapped
            with tx.savepoint():
                outcome = self._commit(tx, mapped)
            links.update(result.new_links)  # later messages of the group see them
            return outcome
        except InboundError as exc:
            return self._fail(tx, job, msg, site, exc, received)
        except StoreError as exc:  # this message's writes are rolled back; not the others'
            log.warning("message %s from site %s not stored: %s", self._logged(msg, site),
                        site.id, exc)
            return self._store_failure(job, exc)

    def _budget(self) -> Callable[[], None]:
        """The mapping's checkpoint: raises ``BudgetExceeded`` once the message has spent
        ``message_time_budget`` seconds (from now) in mapping."""
        budget = self.message_time_budget
        if budget is None:
            return lambda: None
        deadline = time.monotonic() + budget

        def checkpoint() -> None:
            if time.monotonic() > deadline:
                raise BudgetExceeded(
                    f"the message took more than the {budget:g} s mapping time budget and "
                    "was not mapped; split it into smaller messages (stored for replay)",
                    budget="time", segment="MSH", field=10)
        return checkpoint

    def _strict(self, site: Site, raw: bytes) -> Sequence[InboundError]:
        if not site.strict_validation or self.strict_check is None:
            return ()
        return self.strict_check("\r".join(split_messages(raw)[:1]))

    def _commit(self, tx: Transaction, m: Mapped) -> Outcome:
        """One message alone (a replay, or the group redone one by one): the rows that
        ``commit_group`` writes for it."""
        headers = self._headers(m.msg, m.site)
        changes = tx.put_many(wanted(tx, m.result, set()), source=self.source,
                              headers=headers)
        tx.links_put(m.result.new_links)
        outcome, record = self._processed(m, changes)
        if m.job.replay_of is not None:  # ids an earlier mapping wrote and this one does not
            produced = {(r["resourceType"], r["id"]) for r in m.result.resources}
            retired = rekey.retire(tx, m.job.replay_of.resource_refs, produced,
                                   source=self.source, headers=headers)
            outcome.changed += sum(c.changed for c in retired)
            outcome.retired = len(retired)
        outcome.inbox_id = self._save(tx, m.job, record)
        return outcome

    def commit_group(self, tx: Transaction, mapped: list[Mapped]) -> list[Outcome]:
        """Every mapped message of a group in one ``put_many``, one link write and one inbox
        insert: the same rows as ``_commit`` for each in order."""
        resources: list[Resource] = []
        headers: list[dict[str, str]] = []
        counts: list[int] = []
        written: set[tuple[str, str]] = set()
        links: dict[str, str] = {}
        for m in mapped:
            mine = wanted(tx, m.result, written)
            resources += mine
            headers += [self._headers(m.msg, m.site)] * len(mine)
            counts.append(len(mine))
            merge_links(links, m.result.new_links)
        changes = tx.put_many(resources, source=self.source, headers_each=headers)
        tx.links_put(links)
        outcomes, records, start = [], [], 0
        for m, count in zip(mapped, counts, strict=True):
            mine_changes, start = changes[start:start + count], start + count
            outcome, record = self._processed(m, mine_changes)
            outcomes.append(outcome)
            records.append(record)
        for outcome, inbox_id in zip(outcomes, tx.inbox_insert_many(records), strict=True):
            outcome.inbox_id = inbox_id
        return outcomes

    def _processed(self, m: Mapped, changes: list[Change]) -> tuple[Outcome, InboxRecord]:
        """The outcome of a stored message and its inbox record (inserted by the caller)."""
        refs = [f"{c.resource_type}/{c.id}/_history/{c.version_id}" for c in changes]
        responses = self._acks(m.msg, [])
        record = self._record(m.job, m.msg, m.site, "processed", responses, m.received,
                              report=report_outcome(m.result.report), refs=refs)
        changed = sum(c.changed for c in changes)
        return Outcome("processed", "AA", responses, None, changed), record

    def _fail(self, tx: Transaction, job: Job, msg: Message, site: Site,
              exc: InboundError, received: str) -> Outcome:
        log.warning("message %s from site %s not mapped: %s", self._logged(msg, site), site.id,
                    exc)
        budget = getattr(exc, "budget", None)
        if budget is not None:
            self.over_budget[budget] += 1
        responses = self._acks(msg, [exc])
        status = "rejected" if exc.ack_code == "AR" else "error"
        record = self._record(job, msg, site, status, responses, received, error=str(exc))
        inbox_id = self._save(tx, job, record)
        return Outcome(status, exc.ack_code, responses, inbox_id, reason=type(exc).__name__)

    def reject(self, tx: Transaction, job: Job, msg: Message | None, exc: InboundError,
                received: str) -> Outcome:
        """Keep a message that could not be read for inspection, and answer AR/AE."""
        responses = self._acks(msg, [exc], job.raw)
        app = msg.sending_application if msg else ""
        fac = msg.sending_facility if msg else ""
        cid = (msg.control_id if msg else "") or "sha256:" + hashlib.sha256(job.raw).hexdigest()
        # MSH-3/MSH-4 name systems, not people: the log says which sender was refused; the
        # message by its keyed hash, as every log line (no site: "" in the hash)
        named = "msh10#" + message_hash(self.key, "", fac, cid)[:12]
        log.warning("message %s from %s^%s rejected (%s) at %s: %s", named, app or "?",
                    fac or "?", exc.err_code, exc.location, exc)
        record = InboxRecord(app, fac, cid, job.raw, received, job.transport,
                             message_type=msg.message_type if msg else None,
                             status="rejected", ack=join_frames(responses), error=str(exc),
                             ack_ms=job.ack_ms())
        try:
            with tx.savepoint():
                inbox_id = self._save(tx, job, record) if job.replay_of is None else None
        except Exception:  # noqa: BLE001 - a second copy of a rejected message: answer anyway
            inbox_id = None
        return Outcome("rejected", exc.ack_code, responses, inbox_id,
                       reason=type(exc).__name__)

    def _store_failure(self, job: Job, exc: Exception) -> Outcome:
        err = InboundError("the gateway could not store the message; resend later",
                           code="207", ack_code="AE", segment="MSH", field=10)
        try:
            msg: Message | None = parse(job.raw)
        except ParseError:
            msg = None
        return Outcome("refused", "AE", self._acks(msg, [err], job.raw, retriable=True))

    # --- helpers -------------------------------------------------------------------------
    def _record(self, job: Job, msg: Message, site: Site, status: str,
                responses: list[bytes], received: str, *, error: str | None = None,
                report: dict[str, object] | None = None,
                refs: list[str] | None = None) -> InboxRecord:
        return InboxRecord(msg.sending_application, msg.sending_facility, msg.control_id,
                           job.raw, received, job.transport, site=site.id,
                           message_type=msg.message_type, status=status,
                           ack=join_frames(responses), error=error,
                           report=report, resource_refs=refs or [], ack_ms=job.ack_ms(),
                           unmapped=hl7_unmapped(report, job.raw, msg))

    def _save(self, tx: Transaction, job: Job, record: InboxRecord) -> int | None:
        if job.prior is not None:
            record.id = job.prior.id
            if job.replay_of is not None:  # a replay keeps the receive time; a resend not
                record.received = job.replay_of.received
            tx.inbox_update(record)
            return record.id
        return tx.inbox_add(record)

    def _logged(self, msg: Message, site: Site) -> str:
        """MSH-10 as log lines name it: senders build it from MRNs, so the start of its keyed
        hash (the bus header ``message-id``, the Provenance's message identifier)."""
        return "msh10#" + message_hash(self.key, site.id, msg.sending_facility,
                                       msg.control_id)[:12]

    def _headers(self, msg: Message, site: Site) -> dict[str, str]:
        """MSH-10 leaves the edge only as its keyed hash (= the Provenance's message
        identifier); the trace id derives from that hash, not from MSH-10 itself."""
        digest = message_hash(self.key, site.id, msg.sending_facility, msg.control_id)
        return {"origin": self.node_id, "site": site.id, "message-id": digest,
                "traceparent": f"00-{digest[:32]}-{digest[32:48]}-01"}

    def _acks(self, msg: Message | None, errors: Sequence[InboundError], raw: bytes = b"",
              *, retriable: bool = False) -> list[bytes]:
        header = acks.AckHeader.from_message(msg) if msg else acks.AckHeader.from_raw(raw)
        texts = acks.build_acks(header, errors, timestamp=self.clock(), retriable=retriable)
        if not texts:
            # MSH-15/16 asked for no acknowledgment at all (NE/NE). The transport still owes
            # the sender a commit acknowledgment (MLLP release 2), or it would wait forever.
            commit = "CE" if retriable else COMMIT_FOR.get(acks.outcome_of(errors), "CA")
            texts = [acks.render_ack(header, commit, () if commit == "CA" else errors,
                                     control_id=acks.new_control_id(), timestamp=self.clock())]
        charset = msg.charset if msg else "utf-8"
        return [acks.encode_ack(text, charset) for text in texts]


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


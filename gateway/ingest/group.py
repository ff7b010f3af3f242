"""One group commit: every message waiting in the writer's queue, in one transaction.

Each message is parsed, checked against the inbox (one lookup for the whole group) and
mapped; all that mapped are written with one ``put_many`` inside one savepoint. If that
write fails, the group is redone message by message, each in its own savepoint, so a
failing message never takes the others with it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from gateway.adapters.loader import Network
from gateway.errors import ConflictError, InboundError, ParseError
from gateway.hl7.parser import Message, parse
from gateway.ingest.outcome import Clock, Job, Mapped, Outcome, instant, msa_code, split_frames
from gateway.mapping import MappingResult, link_keys
from gateway.store.base import InboxRecord, Resource, Transaction

log = logging.getLogger(__name__)


class Steps(Protocol):
    """What a group asks of the ingest service (``IngestService``) for its messages."""

    network: Network
    key: bytes  # the pseudonym key
    clock: Clock

    def accept(self, tx: Transaction, job: Job, msg: Message, received: str,
               links: dict[str, str], lookup: Callable[[str], str | None], *,
               defer: bool = False) -> Outcome | Mapped:
        """Map one message and commit it in its own savepoint, or (``defer``) hand the
        mapping back for ``commit_group``."""

    def reject(self, tx: Transaction, job: Job, msg: Message | None, exc: InboundError,
               received: str) -> Outcome:
        """Keep a message that could not be read, and answer AR/AE."""

    def commit_group(self, tx: Transaction, mapped: list[Mapped]) -> list[Outcome]:
        """Every mapped message in one write group."""


class Group:
    """One group commit: the messages waiting in the writer's queue, each in its own
    savepoint, with one inbox lookup for the whole group (duplicates) and the pseudonym
    links that earlier messages of the group learned (visible to the later ones before
    the commit)."""

    def __init__(self, service: Steps, tx: Transaction, jobs: list[Job]) -> None:
        self.service, self.tx, self.jobs = service, tx, jobs
        self.seen: dict[tuple[str, str, str], Outcome | Mapped] = {}
        self.links: dict[str, str] = {}  # learned by this group's messages so far
        self.stored_links: dict[str, str | None] = {}  # the store's, as the group began

    def lookup_link(self, key: str) -> str | None:
        """A link learned earlier in the group, else the store's (asked once per key: the
        mapping asks again for every link it learns, and the group's own writes are all in
        ``links``)."""
        found = self.links.get(key)
        if found is None:
            if key not in self.stored_links:
                self.stored_links[key] = self.tx.link_get(key)
            found = self.stored_links[key]
        return found

    def run(self) -> list[Outcome]:
        parsed = [self._parse(job) for job in self.jobs]
        keys = [key_of(m) for m in parsed if isinstance(m, Message) and m.control_id]
        fresh = [job.replay_of is None for job in self.jobs]
        stored = self.tx.inbox_find_many(keys) if keys and any(fresh) else {}
        self._mark_resends(parsed, stored)
        self._prefetch_links(parsed)
        if all(job.prior is None for job in self.jobs) and len(self.jobs) > 1:
            try:
                with self.tx.savepoint():
                    return self._together(parsed, stored)
            except Exception:  # noqa: BLE001 - redone message by message just below
                log.warning("group write of %d messages failed; one by one", len(self.jobs))
                self.seen.clear()
                self.links.clear()
        return [self._settled(job, msg, stored)
                for job, msg in zip(self.jobs, parsed, strict=True)]

    def _mark_resends(self, parsed: list[Message | ParseError],
                      stored: dict[tuple[str, str, str], InboxRecord]) -> None:
        """A message stored before without being accepted (AE/AR, or never answered) is
        processed again: the configuration may have been fixed since."""
        for job, msg in zip(self.jobs, parsed, strict=True):
            if job.replay_of is None and isinstance(msg, Message) and msg.control_id:
                previous = stored.get(key_of(msg))
                if previous is not None and not accepted(previous):
                    job.resend_of = previous

    def _prefetch_links(self, parsed: list[Message | ParseError]) -> None:
        """The store's links for every identifier of the group, in one statement (one
        round trip instead of one per identifier on PostgreSQL)."""
        wanted: list[str] = []
        for msg in parsed:
            if not isinstance(msg, Message):
                continue
            site = self.service.network.site_for(msg.sending_facility)
            if site is not None:
                with contextlib.suppress(Exception):  # a hint; the mapping reports the error
                    wanted += link_keys(msg, site, pseudonym_key=self.service.key)
        if wanted:
            found = self.tx.links_get(wanted)
            self.stored_links.update({key: found.get(key) for key in wanted})

    def _settled(self, job: Job, msg: Message | ParseError,
                 stored: dict[tuple[str, str, str], InboxRecord]) -> Outcome:
        outcome = self._one(job, msg, stored)
        assert isinstance(outcome, Outcome)  # without ``defer`` every message is settled
        return outcome

    def _together(self, parsed: list[Message | ParseError],
                  stored: dict[tuple[str, str, str], InboxRecord]) -> list[Outcome]:
        """Map every message, then write all that mapped in one ``put_many``."""
        first = [self._one(job, msg, stored, defer=True)
                 for job, msg in zip(self.jobs, parsed, strict=True)]
        mapped = [m for m in first if isinstance(m, Mapped)]
        written = dict(zip(map(id, mapped), self.service.commit_group(self.tx, mapped),
                           strict=True)) if mapped else {}
        return [written[id(o)] if isinstance(o, Mapped) else o for o in first]

    def _parse(self, job: Job) -> Message | ParseError:
        try:
            return parse(job.raw)
        except ParseError as exc:
            return exc

    def _one(self, job: Job, msg: Message | ParseError,
             stored: dict[tuple[str, str, str], InboxRecord], *,
             defer: bool = False) -> Outcome | Mapped:
        service = self.service
        # a replay keeps the original receive time: Provenance.recorded must not change
        received = job.replay_of.received if job.replay_of else instant(service.clock())
        if isinstance(msg, ParseError):
            return service.reject(self.tx, job, None, msg, received)
        key = key_of(msg)
        if job.replay_of is None:
            if key in self.seen:
                return self.seen[key]
            previous = stored.get(key) if msg.control_id else None
            if previous is not None and accepted(previous) and previous.ack is not None:
                frames = split_frames(previous.ack)
                return Outcome("duplicate", msa_code(frames), frames, previous.id)
        outcome = service.accept(self.tx, job, msg, received, self.links, self.lookup_link,
                                  defer=defer)
        self.seen[key] = outcome
        return outcome


def wanted(tx: Transaction, result: MappingResult,
            written: set[tuple[str, str]]) -> list[Resource]:
    """The resources of a mapping to write: a create-only one only if neither the store nor
    an earlier message of the group has it."""
    create_only = result.create_only
    out = []
    for resource in result.resources:
        rkey = (resource["resourceType"], resource["id"])
        if rkey in create_only and (rkey in written or tx.get(*rkey) is not None):
            continue
        written.add(rkey)
        out.append(resource)
    return out


def merge_links(links: dict[str, str], new: dict[str, str]) -> None:
    for key, pseudonym in new.items():
        if links.setdefault(key, pseudonym) != pseudonym:
            raise ConflictError("pseudonym link learned twice with another value")


def accepted(record: InboxRecord) -> bool:
    """Stored and acknowledged AA/CA: only these are answered from the inbox on a resend."""
    return record.status == "processed"


def key_of(msg: Message) -> tuple[str, str, str]:
    return (msg.sending_application, msg.sending_facility, msg.control_id)

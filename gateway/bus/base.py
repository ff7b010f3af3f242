"""The bus seam: a small publish/consume protocol with a Kafka and an embedded implementation.

Wire contract (documented in ``schemas/asyncapi.yaml``):

* topic ``<prefix>.fhir.<ResourceType>`` (prefix ``gateway`` by default),
* key ``<ResourceType>/<id>`` (so every version of one resource lands on one partition,
  in order),
* value the resource JSON with ``meta.versionId``/``lastUpdated``/``source``; ``None`` is a
  tombstone (the resource was deleted),
* headers ``content-type``, ``origin`` (node id), ``site``, ``message-id`` (the inbound
  MSH-10), ``traceparent`` (W3C) and ``version-id`` (the resource version, also on tombstones).

Delivery is at least once. A consumer makes redelivery harmless by ignoring a record whose
``version-id`` is not newer than what it already holds (the hub projector does exactly that).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

CONTENT_TYPE = "application/fhir+json; fhirVersion=4.0"
DEFAULT_PREFIX = "gateway"

_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True, slots=True)
class BusRecord:
    """One record to publish: ``value`` None is a tombstone."""

    topic: str
    key: str
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """One record as a consumer receives it, with its position in the log."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes | None
    headers: dict[str, str]

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class Consumer(Protocol):
    """A member of a consumer group. Offsets are committed explicitly (never automatically)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, max_wait: float = 1.0, max_records: int = 1000) -> list[Delivery]:
        """Records in log order per partition; an empty list after ``max_wait`` seconds."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offset`` = the next offset to read, per partition."""

    def lag(self) -> dict[str, int]:
        """Records not yet committed, per ``"<topic>[<partition>]"``."""


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, records: Sequence[BusRecord]) -> None:
        """Publish in order per key; returns when the broker acknowledged every record.

        Raises ``BusError`` (retriable) when the broker is unreachable or refuses.
        """

    async def ensure_topics(self, resource_types: Iterable[str]) -> None:
        """Create the topics of these resource types when missing."""

    def subscribe(self, group: str, topics: Sequence[str]) -> Consumer: ...


def topic_for(resource_type: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}.fhir.{resource_type}"


def key_for(resource_type: str, id: str) -> str:
    return f"{resource_type}/{id}"


def new_traceparent() -> str:
    """A fresh W3C trace context (version 00, sampled)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def valid_traceparent(value: str | None) -> bool:
    return value is not None and _TRACEPARENT.match(value) is not None


def inbound_headers(*, site: str | None, message_id: str | None,
                    traceparent: str | None = None) -> dict[str, str]:
    """The headers the ingest stores with the outbox rows of one inbound message.

    Keeps a valid incoming ``traceparent`` (propagation), generates one otherwise: all the
    resources of one message share one trace.
    """
    if traceparent is None or not valid_traceparent(traceparent):
        traceparent = new_traceparent()
    headers = {"traceparent": traceparent}
    if site:
        headers["site"] = site
    if message_id:
        headers["message-id"] = message_id
    return headers


async def cancel_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task (relay, projector) and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

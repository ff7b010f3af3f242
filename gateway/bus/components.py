"""What ``gateway serve`` starts on the bus side, per role.

| role | bus | relay (outbox → bus) | hub projector (bus → store) |
|---|---|---|---|
| edge | Kafka (or the embedded log shared with a hub on the same machine) | yes | no |
| hub | Kafka (or the embedded log) | yes: the hub's own API writes | yes, into the store |
| all | the embedded log unless ``kafka_bootstrap`` | yes | only with ``hub_database_url`` |

In ``all`` the hub store *is* the edge store: projecting into it would re-read every record
to find the version it already holds, so the projector runs only when a separate hub
database is configured (``--hub-database-url``). The relay runs in every role: every
store commit writes outbox rows, and an undrained outbox would stop the ingest
(``outbox_max``). At the hub the projector writes no outbox rows (``apply_version``), so
nothing loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.bus.base import Bus, topic_for
from gateway.bus.embedded import EmbeddedBus
from gateway.bus.kafka import KafkaBus
from gateway.bus.projector import HUB_RESOURCE_TYPES, RELAYED_TYPES, HubProjector
from gateway.bus.relay import OutboxRelay
from gateway.bus.settings import BusSettings
from gateway.errors import GatewayError
from gateway.store import Store

log = logging.getLogger(__name__)


def make_bus(settings: BusSettings, data_dir: Path | None = None) -> Bus:
    if settings.kafka_bootstrap:
        return KafkaBus(settings)
    url = settings.embedded_bus_url
    if url is None:
        directory = (data_dir or Path("var")).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{directory / 'bus.db'}"
    return EmbeddedBus(url, retention_hours=settings.embedded_retention_hours)


def make_relay(settings: BusSettings, store: Store, bus: Bus) -> OutboxRelay:
    return OutboxRelay(store, bus, prefix=settings.topic_prefix, origin=settings.node_id,
                       batch_size=settings.relay_batch_size,
                       max_backoff=settings.relay_max_backoff, outbox_max=settings.outbox_max,
                       retention_days=settings.outbox_retention_days,
                       topics=RELAYED_TYPES)


def make_projector(settings: BusSettings, store: Store, bus: Bus) -> HubProjector:
    topics = [topic_for(t, settings.topic_prefix) for t in HUB_RESOURCE_TYPES]
    return HubProjector(bus.subscribe(settings.consumer_group, topics), store)


@dataclass
class BusComponents:
    settings: BusSettings
    bus: Bus
    relay: OutboxRelay | None = None
    projector: HubProjector | None = None
    hub_store: Store | None = None  # opened here (role all + hub_database_url): closed here

    def accepting(self) -> bool:
        """The ingest's backpressure predicate: False → answer AE/CE with ERR-3 207."""
        return self.relay is None or self.relay.accepting()

    def notify(self, rows: int = 1) -> None:
        """The ingest committed ``rows`` outbox rows."""
        if self.relay is not None:
            self.relay.notify(rows)

    def status(self) -> dict[str, object]:
        """The body of ``GET /admin/bus``."""
        return {
            "bus": "kafka" if isinstance(self.bus, KafkaBus) else "embedded",
            "topic_prefix": self.settings.topic_prefix,
            "node_id": self.settings.node_id,
            "relay": self.relay.status() if self.relay else None,
            "projector": self.projector.status() if self.projector else None,
        }

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop the projector, then the relay after a last drain (bounded: rows left behind
        are published at the next start)."""
        if self.projector is not None:
            await self.projector.stop()
        if self.relay is not None:
            await self.relay.stop()
            with contextlib.suppress(GatewayError, TimeoutError):
                await asyncio.wait_for(self.relay.drain(), drain_timeout)
        with contextlib.suppress(GatewayError):
            await self.bus.stop()
        if self.hub_store is not None:
            await asyncio.to_thread(self.hub_store.close)


async def start_bus_components(settings: BusSettings, store: Store, role: str, *,
                               data_dir: Path | None = None) -> BusComponents:
    """Start the relay and/or the projector for ``role`` (edge | hub | all).

    Never waits for Kafka and never fails because it is down: the relay (which also creates
    the topics) and the projector connect in the background and retry with backoff; the
    outbox grows, ``status()`` shows the error.
    """
    bus = make_bus(settings, data_dir)
    parts = BusComponents(settings, bus)
    parts.relay = make_relay(settings, store, bus)
    await parts.relay.start()
    hub_store = _hub_store(settings, store, role)
    if hub_store is not None:
        parts.hub_store = hub_store if hub_store is not store else None
        parts.projector = make_projector(settings, hub_store, bus)
        await parts.projector.start()
    log.info("bus started: role %s, %s", role, parts.status()["bus"])
    return parts


def _hub_store(settings: BusSettings, store: Store, role: str) -> Store | None:
    if role == "hub":
        return store
    if role == "all" and settings.hub_database_url:
        from gateway.store import SqlStore

        hub = SqlStore(settings.hub_database_url)
        hub.migrate()
        return hub
    return None

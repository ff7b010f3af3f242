"""What ``gateway serve`` starts on the bus side, per role.

| role | bus | relay (outbox → bus) | hub projector (bus → hub store) |
|---|---|---|---|
| edge | Kafka (or the embedded log shared with a hub on the same machine) | yes | no |
| hub | Kafka (or the embedded log) | yes: the hub's own API writes | yes |
| all | the embedded log unless ``kafka_bootstrap`` | two: the edge store's, the hub's | yes |

Role ``all`` is an edge and a hub in one process, on the production path: the ingest
commits into the lean edge store and is acknowledged; the edge's relay publishes the
outbox rows; the projector writes them into the hub store, which the FHIR API serves. The
relay runs in every role: every store commit writes outbox rows, and an undrained outbox
would stop the ingest (``outbox_max``). At the hub the projector writes no outbox rows
(``apply_version``), so nothing loops.

``settle()`` is read-your-writes for tests and tools: it returns once everything the
stores had committed when it was called is in the hub store.
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
from gateway.bus.process import ProjectorJob, ProjectorProcess
from gateway.bus.projector import HUB_RESOURCE_TYPES, RELAYED_TYPES, HubProjector
from gateway.bus.relay import OutboxRelay
from gateway.bus.settings import BusSettings
from gateway.errors import ConfigError, GatewayError
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
    projector: HubProjector | ProjectorProcess | None = None
    hub_relay: OutboxRelay | None = None  # role all: the hub store's own outbox (API writes)

    def accepting(self) -> bool:
        """The ingest's backpressure predicate: False → answer AE/CE with ERR-3 207."""
        return self.relay is None or self.relay.accepting()

    def notify(self, rows: int = 1) -> None:
        """The ingest committed ``rows`` outbox rows."""
        if self.relay is not None:
            self.relay.notify(rows)

    def status(self) -> dict[str, object]:
        """The body of ``GET /admin/bus``."""
        out: dict[str, object] = {
            "bus": "kafka" if isinstance(self.bus, KafkaBus) else "embedded",
            "topic_prefix": self.settings.topic_prefix,
            "node_id": self.settings.node_id,
            "relay": self.relay.status() if self.relay else None,
            "projector": self.projector.status() if self.projector else None,
        }
        if self.hub_relay is not None:
            out["hub_relay"] = self.hub_relay.status()
        return out

    async def settle(self, within: float = 10.0) -> bool:
        """Wait until what the stores committed before this call is in the hub store: the
        relays published it, the projector applied it. False if ``within`` seconds passed first."""
        relays = [r for r in (self.relay, self.hub_relay) if r is not None]
        try:
            async with asyncio.timeout(within):
                for relay in relays:
                    await relay.published_all()
                if self.projector is not None:
                    await self.projector.caught_up()
        except TimeoutError:
            return False
        return True

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop the projector, then the relays after a last drain (bounded: rows left
        behind are published at the next start)."""
        if self.projector is not None:
            await self.projector.stop()
        for relay in (self.relay, self.hub_relay):
            if relay is not None:
                await relay.stop()
                with contextlib.suppress(GatewayError, TimeoutError):
                    await asyncio.wait_for(relay.drain(), drain_timeout)
        with contextlib.suppress(GatewayError):
            await self.bus.stop()


async def start_bus_components(settings: BusSettings, store: Store, role: str, *,
                               hub_store: Store | None = None,
                               data_dir: Path | None = None,
                               projector_job: ProjectorJob | None = None) -> BusComponents:
    """Start the relay(s) and/or the projector for ``role`` (edge | hub | all). ``store``
    is the node's own store (role all: the edge's), ``hub_store`` role all's hub store.
    ``projector_job`` (role all): the projector runs in a child process
    (``gateway.bus.process``) rather than in this one.

    Never waits for Kafka and never fails because it is down: the relay (which also creates
    the topics) and the projector connect in the background and retry with backoff; the
    outbox grows, ``status()`` shows the error.
    """
    if role == "all" and hub_store is None:
        raise ConfigError("role all needs its hub store")
    bus = make_bus(settings, data_dir)
    parts = BusComponents(settings, bus)
    parts.relay = make_relay(settings, store, bus)
    await parts.relay.start()
    if role == "all":
        assert hub_store is not None
        parts.hub_relay = make_relay(settings, hub_store, bus)
        await parts.hub_relay.start()
    target = store if role == "hub" else hub_store if role == "all" else None
    if role == "all" and projector_job is not None:
        process = ProjectorProcess(projector_job)
        if isinstance(bus, EmbeddedBus):
            bus.on_publish.append(process.published)
        parts.projector = process
        await process.start()
    elif target is not None:
        parts.projector = make_projector(settings, target, bus)
        await parts.projector.start()
    log.info("bus started: role %s, %s", role, parts.status()["bus"])
    return parts

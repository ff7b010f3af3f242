"""Helpers shared by tests across packages (fixtures live in the conftest files)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from gateway.ingest.outcome import Outcome
from gateway.ingest.service import IngestService
from gateway.store.sql import SqlStore

if TYPE_CHECKING:
    from gateway.runtime import Gateway


@contextmanager
def migrated_store(url: str) -> Iterator[SqlStore]:
    """A store on ``url`` with the schema migrated, closed afterwards."""
    store = SqlStore(url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


async def settled(gateway: Gateway) -> SqlStore:
    """The hub store (what the FHIR API serves) once it holds everything the gateway has
    acknowledged: in role all the projector writes it shortly after the ACK."""
    assert await gateway.settle(within=20), "the hub store did not catch up within 20 s"
    assert gateway.hub_store is not None
    return gateway.hub_store


async def hub_search(gateway: Gateway, resource_type: str,
                     params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """``search`` on the hub store once it caught up (``settled``)."""
    return (await settled(gateway)).search(resource_type, params).resources


def process(service: IngestService, raw: bytes, transport: str = "mllp") -> Outcome:
    """One message through the service's writer thread, answered after its commit (as a
    sender is); the writer thread is stopped afterwards."""
    try:
        return asyncio.run(service.handle(raw, transport))
    finally:
        service.stop()

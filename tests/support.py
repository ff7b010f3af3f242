"""Helpers shared by tests across packages (fixtures live in the conftest files)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.ingest.outcome import Outcome
from gateway.ingest.service import IngestService
from gateway.store.sql import SqlStore


@contextmanager
def migrated_store(url: str) -> Iterator[SqlStore]:
    """A store on ``url`` with the schema migrated, closed afterwards."""
    store = SqlStore(url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


def process(service: IngestService, raw: bytes, transport: str = "mllp") -> Outcome:
    """One message through the service's writer thread, answered after its commit (as a
    sender is); the writer thread is stopped afterwards."""
    try:
        return asyncio.run(service.handle(raw, transport))
    finally:
        service.stop()

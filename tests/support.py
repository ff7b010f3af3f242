"""Helpers shared by tests across packages (fixtures live in the conftest files)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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

"""A migrated store on each database (``database_url`` runs every test on both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.store.sql import SqlStore


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    store = SqlStore(database_url)
    store.migrate()
    yield store
    store.close()

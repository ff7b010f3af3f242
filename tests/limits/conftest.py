"""One store of 10k Observations per database for the whole session (loading is slow)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.store.sql import SqlStore
from tests.limits.heavy import loaded_store


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[SqlStore]:
    """Read-only for the tests that use it."""
    with loaded_store(request, tmp_path_factory) as store:
        yield store

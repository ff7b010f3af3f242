"""A store of 10k Observations and a search that is slow on it while staying within every
limit (5 filters of 100 ``:text:not`` values, five sort keys, an accurate total: ~0.15 s
on SQLite and ~0.4 s on PostgreSQL, against budgets of a few hundredths of a second)."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.store.sql import SqlStore
from tests.conftest import drop_pg_database, make_pg_database

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from api import observation  # noqa: E402 - bench/api.py: the benchmark's Observations

N = 10_000


def load(store: SqlStore, n: int = N) -> None:
    rng = random.Random(7)
    store.bulk_put([{"resourceType": "Patient", "id": f"pt-{k}"} for k in range(100)])
    store.bulk_put([observation(i, 100, rng) for i in range(n)])
    store.optimize()


def heavy_params(filters: int = 5) -> list[tuple[str, str]]:
    params = [("code:text:not" if i % 2 else "category:text:not",
               ",".join(f"q{i}x{j}" for j in range(100))) for i in range(filters)]
    return [*params, ("_sort", "-value-quantity,code,subject,status,-date"),
            ("_total", "accurate")]


@contextmanager
def loaded_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[SqlStore]:
    """For a session-scoped fixture parametrised over ``sqlite`` and ``postgresql``."""
    if request.param == "sqlite":
        store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('heavy') / 'gateway.db'}")
        store.migrate()
        load(store)
        yield store
        store.close()
        return
    admin = request.getfixturevalue("pg_server")
    url, name = make_pg_database(admin)
    store = SqlStore(url)
    store.migrate()
    load(store)
    yield store
    store.close()
    drop_pg_database(admin, name)


def form(params: list[tuple[str, str]]) -> dict[str, Any]:
    return {"content": "&".join(f"{k}={v}" for k, v in params).encode(),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}

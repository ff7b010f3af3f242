"""A real uvicorn server with the FHIR router on a fresh store, on SQLite and PostgreSQL.

``fhir_server`` starts uvicorn in a thread on a free port (port 0) for one test; every
test that uses it runs twice (``database_url`` is parametrised over both databases).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from gateway.api.fhir import fhir_router, install_fhir_errors
from gateway.store.sql import SqlStore
from tests.conftest import drop_pg_database, make_pg_database

FHIR_JSON = "application/fhir+json"


def make_app(store: SqlStore, **options: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(fhir_router(store, **options))
    install_fhir_errors(app)
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    return app


@dataclass
class Served:
    store: SqlStore
    url: str  # http://127.0.0.1:<port>
    base: str  # <url>/fhir

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30,
                            headers={"Accept": FHIR_JSON}, **kwargs)  # type: ignore[arg-type]


class ThreadedServer:
    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def open_store(url: str) -> SqlStore:
    db = SqlStore(url)
    db.migrate()
    return db


@contextmanager
def serving(store: SqlStore, **options: Any) -> Iterator[Served]:
    with ThreadedServer(make_app(store, **options)) as port:
        url = f"http://127.0.0.1:{port}"
        yield Served(store, url, f"{url}/fhir")


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    db = open_store(database_url)
    yield db
    db.close()


@pytest.fixture
def fhir_server(store: SqlStore) -> Iterator[Served]:
    """A server on a fresh, empty store (both databases) for one test."""
    with serving(store) as served:
        yield served


@pytest.fixture
def fresh_client(fhir_server: Served) -> Iterator[httpx.Client]:
    with fhir_server.client() as http:
        yield http


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_server(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server per test module and database: tests using it must not assume an empty
    store (they create their own resources with fresh ids)."""
    if request.param == "sqlite":
        db = open_store(f"sqlite:///{tmp_path_factory.mktemp('fhir') / 'gateway.db'}")
        with serving(db) as served:
            yield served
        db.close()
        return
    admin = request.getfixturevalue("pg_server")
    url, name = make_pg_database(admin)
    db = open_store(url)
    with serving(db) as served:
        yield served
    db.close()
    drop_pg_database(admin, name)


@pytest.fixture
def client(shared_server: Served) -> Iterator[httpx.Client]:
    with shared_server.client() as http:
        yield http


"""A real uvicorn server with the FHIR router on a fresh store, on SQLite and PostgreSQL.

``fhir_server`` starts uvicorn in a thread on a free port (port 0) for one test; every
test that uses it runs twice (``database_url`` is parametrised over both databases).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from gateway.api.fhir import fhir_router, install_fhir_errors
from gateway.store.sql import SqlStore

FHIR_JSON = "application/fhir+json"


def make_app(store: SqlStore) -> FastAPI:
    app = FastAPI()
    app.include_router(fhir_router(store))
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


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    db = SqlStore(database_url)
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def fhir_server(store: SqlStore) -> Iterator[Served]:
    with ThreadedServer(make_app(store)) as port:
        url = f"http://127.0.0.1:{port}"
        yield Served(store, url, f"{url}/fhir")


@pytest.fixture
def client(fhir_server: Served) -> Iterator[httpx.Client]:
    with fhir_server.client() as http:
        yield http

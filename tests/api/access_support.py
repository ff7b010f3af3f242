"""A real server whose callers are set by test headers, over the two-study dataset.

Until the authentication middleware lands, ``PrincipalFromHeaders`` (test only) puts a
``Principal`` on ``scope["state"]["principal"]`` from ``X-Test-Studies`` / ``X-Test-Sites``
(comma-separated; an empty header is an empty set); without them the request runs
unrestricted, as the loopback demo does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from gateway.security.principal import Principal
from gateway.store.sql import SqlStore
from tests.conftest import drop_pg_database, make_pg_database

from .access_data import DATA
from .conftest import Served as Served
from .conftest import ThreadedServer, make_app, open_store

SCOPES = frozenset({"system/*.cruds"})


class PrincipalFromHeaders:
    """Pure ASGI middleware: the caller's studies and sites from test headers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            studies, sites = headers.get(b"x-test-studies"), headers.get(b"x-test-sites")
            if studies is not None or sites is not None:
                scope.setdefault("state", {})["principal"] = Principal(
                    "test-client", SCOPES, studies=_names(studies), sites=_names(sites))
        await self.app(scope, receive, send)


def _names(header: bytes | None) -> frozenset[str] | None:
    if header is None:
        return None
    return frozenset(part for part in header.decode().split(",") if part)


def load(store: SqlStore) -> None:
    with store.transaction() as tx:
        for resource in DATA:
            tx.put(resource)


@contextmanager
def access_server(store: SqlStore) -> Iterator[Served]:
    app = make_app(store)
    app.add_middleware(PrincipalFromHeaders)
    with ThreadedServer(app) as port:
        url = f"http://127.0.0.1:{port}"
        yield Served(store, url, f"{url}/fhir")


def serve_dataset(store: SqlStore) -> Iterator[Served]:
    """The dataset on ``store``, served until the generator is closed."""
    load(store)
    with access_server(store) as served:
        yield served
    store.close()


def dataset_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Served]:
    """For a module-scoped fixture parametrised with the database name."""
    if request.param == "sqlite":
        yield from serve_dataset(open_store(f"sqlite:///{tmp_path_factory.mktemp('a') / 'g.db'}"))
        return
    admin = request.getfixturevalue("pg_server")
    url, name = make_pg_database(admin)
    yield from serve_dataset(open_store(url))
    drop_pg_database(admin, name)


def as_client(served: Served, studies: str | None = None, sites: str | None = None
              ) -> httpx.Client:
    headers = {"Accept": "application/fhir+json"}
    if studies is not None:
        headers["X-Test-Studies"] = studies
    if sites is not None:
        headers["X-Test-Sites"] = sites
    return httpx.Client(base_url=served.base, timeout=30, headers=headers)


def keys(bundle: dict[str, Any], mode: str | None = None) -> list[str]:
    """``Type/id`` of the bundle's resource entries (of one search mode, if given)."""
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") != "OperationOutcome"
            and (mode is None or e.get("search", {}).get("mode") == mode)]


def all_pages(http: httpx.Client, url: str, params: Any = None,
              limit: int = 50) -> list[dict[str, Any]]:
    """Every page of a search, following ``next`` links."""
    pages = []
    response = http.get(url, params=params)
    for _ in range(limit):
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        following = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        if not following:
            return pages
        response = http.get(following[0])
    raise AssertionError("paging did not end")

"""A real server with the views router (before the generic FHIR router, as the gateway
mounts it), callers named by the test-only ``X-Test-Client`` header (none: the loopback
demo's anonymous caller)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.fhir import fhir_router, install_fhir_errors
from gateway.api.fhir.operations import capability_operations
from gateway.api.fhir.views import CAPABILITY_ENTRY, views_router, with_view_operations
from gateway.security.principal import Principal
from gateway.store.sql import SqlStore
from tests.api.conftest import ThreadedServer

CLIENTS = {
    "analyst": Principal("analyst", frozenset({"system/*.rs", "system/ViewDefinition.cruds"})),
    "patients-only": Principal("patients-only", frozenset({"system/Patient.rs",
                                                           "system/ViewDefinition.rs"})),
    "no-views": Principal("no-views", frozenset({"system/Observation.rs"})),
    "study-s1": Principal("study-s1", frozenset({"system/*.rs"}), studies=frozenset({"s1"})),
}


class PrincipalFromHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = dict(scope["headers"]).get(b"x-test-client", b"").decode()
            if name:
                scope.setdefault("state", {})["principal"] = CLIENTS[name]
        await self.app(scope, receive, send)


@dataclass
class ViewServer:
    store: SqlStore
    base: str

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {"X-Test-Client": who} if who else {}
        return httpx.Client(base_url=self.base, timeout=30, headers=headers)


@contextmanager
def view_server(store: SqlStore, **options: Any) -> Iterator[ViewServer]:
    app = FastAPI()
    app.include_router(views_router(store, **options))
    app.include_router(fhir_router(store, capability_resources=[CAPABILITY_ENTRY],
                                   capability_operations=with_view_operations(
                                       capability_operations())))
    install_fhir_errors(app)
    app.add_middleware(PrincipalFromHeader)
    with ThreadedServer(app) as port:
        yield ViewServer(store, f"http://127.0.0.1:{port}/fhir")


def run_body(view: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    """A Parameters body: ``viewResource`` and the other parameters (lists repeat)."""
    entries: list[dict[str, Any]] = []
    if view is not None:
        entries.append({"name": "viewResource", "resource": view})
    for name, value in params.items():
        for one in value if isinstance(value, list) else [value]:
            entries.append(_entry(name, one))
    return {"resourceType": "Parameters", "parameter": entries}


def _entry(name: str, value: Any) -> dict[str, Any]:
    if name == "resource":
        return {"name": name, "resource": value}
    if name in ("patient", "group", "viewReference"):
        return {"name": name, "valueReference": {"reference": value}}
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, int):
        return {"name": name, "valueInteger": value}
    return {"name": name, "valueString": value}

"""A real uvicorn server with the FHIR API, ``/fhir/AuditEvent`` and the audit middleware
outermost, on SQLite and PostgreSQL. Until the authentication middleware lands, a tiny
test-only middleware plays its part: ``X-Test-Client`` names the caller (its scopes in
``X-Test-Scopes``), ``X-Test-Client: -`` is answered 401 as a missing token would be."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.app import create_app
from gateway.api.fhir import fhir_router, install_fhir_errors
from gateway.audit import CAPABILITY_ENTRY, AuditTrail, audit_router, install_audit
from gateway.security.principal import AUDIT, Principal
from gateway.store.audit import AuditLog
from gateway.store.sql import SqlStore
from tests.api.conftest import ThreadedServer, open_store

KEY = b"k" * 32
AUDITOR = {"X-Test-Client": "auditor", "X-Test-Scopes": AUDIT}
READER = {"X-Test-Client": "reader", "X-Test-Scopes": "system/*.cruds"}


class TestPrincipal:
    """Test-only stand-in for the authentication middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            client = headers.get(b"x-test-client", b"").decode()
            if client == "-":
                await JSONResponse({"error": "no token"}, 401,
                                   {"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
            if client:
                scopes = frozenset(headers.get(b"x-test-scopes", b"").decode().split())
                scope.setdefault("state", {})["principal"] = Principal(client, scopes)
        await self.app(scope, receive, send)


def token_router() -> Any:
    """Stands in for ``POST /auth/token`` (built by the auth engineer): it names the
    client that asked in ``request.state.audit``, as the real route will."""
    from fastapi import APIRouter

    router = APIRouter()

    @router.post("/auth/token")
    async def token(request: Request) -> Response:
        form = dict(x.split("=", 1) for x in (await request.body()).decode().split("&"))
        request.state.audit = {"agent": form.get("client", "")}
        ok = form.get("good") == "1"
        return JSONResponse({"access_token": "t"} if ok else {"error": "invalid_client"},
                            200 if ok else 401)

    return router


def make_app(store: SqlStore, trail: AuditTrail) -> FastAPI:
    def principals(app: FastAPI) -> None:
        app.add_middleware(TestPrincipal)  # type: ignore[arg-type]

    return create_app(
        routers=[audit_router(AuditLog(store)), token_router(),
                 fhir_router(store, capability_resources=[CAPABILITY_ENTRY])],
        setup=[install_fhir_errors, principals, lambda app: install_audit(app, trail)],
        health={"audit": trail.status})


@dataclass
class Audited:
    store: SqlStore
    trail: AuditTrail
    url: str

    def client(self, headers: dict[str, str] | None = None) -> httpx.Client:
        chosen = READER if headers is None else headers
        return httpx.Client(base_url=self.url, timeout=30, headers=chosen)

    def events(self) -> list[dict[str, Any]]:
        """Every event written so far, oldest first (straight from the table)."""
        import orjson

        from gateway.store.audit import AuditQuery

        assert self.trail.flush(), self.trail.status()
        rows, _ = AuditLog(self.store).search(AuditQuery(newest_first=False, count=10_000))
        return [orjson.loads(content) for _, content in rows]


def serve(store: SqlStore, trail: AuditTrail) -> Iterator[Audited]:
    with ThreadedServer(make_app(store, trail)) as port:
        yield Audited(store, trail, f"http://127.0.0.1:{port}")


@pytest.fixture
def audited(database_url: str) -> Iterator[Audited]:
    store = open_store(database_url)
    trail = AuditTrail(AuditLog(store), node="test-node", key=KEY).start()
    yield from serve(store, trail)
    trail.stop()
    store.close()


def summary(event: dict[str, Any]) -> tuple[str, str, str, str, list[str]]:
    """(last subtype code, action, outcome, agent, entity references) of one event."""
    refs = [e["what"].get("reference") or e["what"]["identifier"]["value"]
            for e in event.get("entity", ()) if "what" in e]
    return (event["subtype"][-1]["code"], event["action"], event["outcome"],
            event["agent"][0]["who"]["identifier"]["value"], refs)

"""``GET /admin/counters`` over real HTTP (uvicorn) with a real MLLP listener: refused
connections, messages over the time budget and failed background inputs, for an ADMIN
caller only. The principal is put on the request by a test-only middleware (the
authentication middleware is built elsewhere)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from gateway.adapters.loader import load_network
from gateway.api.counters import counters_router
from gateway.failures import FailureCounters
from gateway.hl7.mllp import MllpClient, MllpServer
from gateway.ingest import IngestService
from gateway.security.principal import ADMIN, Principal
from gateway.store.sql import SqlStore
from tests.adapters.conftest import serving
from tests.hl7.test_mllp_server import EchoHandler, msg


class AsCaller:
    """Test-only ASGI middleware: the principal named by the ``x-test-scopes`` header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            scopes = headers.get(b"x-test-scopes", b"").decode().split()
            scope.setdefault("state", {})["principal"] = Principal(
                "test-client", frozenset(scopes))
        await self.app(scope, receive, send)


async def test_counters_show_refused_connections_and_failures_to_an_admin_only(
        store: SqlStore) -> None:
    service = IngestService(store, load_network(), b"k" * 32, message_time_budget=5)
    failures = FailureCounters()
    failures.record("drop-folder/hpg23", "RuntimeError", "sha256:0123456789ab")
    server = MllpServer(EchoHandler(), "127.0.0.1", 0, max_connections=1)
    await server.start()
    app = FastAPI()
    app.include_router(counters_router(service, failures, lambda: server))
    try:
        async with await MllpClient.connect("127.0.0.1", server.port, timeout=5) as first:
            assert await first.send(msg("ONE")) == [b"ACK ONE"]
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert await asyncio.wait_for(reader.read(10), 2) == b""  # closed at once
            writer.close()
        with serving(AsCaller(app)) as base:
            async with httpx.AsyncClient(base_url=base) as http:
                denied = await http.get("/admin/counters",
                                        headers={"x-test-scopes": "system/Observation.rs"})
                allowed = await http.get("/admin/counters", headers={"x-test-scopes": ADMIN})
    finally:
        await server.close(grace=1)
    assert denied.status_code == 403
    assert denied.json()["issue"][0]["code"] == "forbidden"
    assert allowed.status_code == 200
    body = allowed.json()
    assert body["mllp"]["refused"] == 1 and body["mllp"]["frames"] == 1
    assert body["ingest"] == {"over_time_budget": 0, "over_resource_limit": 0,
                              "message_time_budget": 5, "max_resources_per_message": 5_000}
    assert body["background"]["drop-folder/hpg23"]["by_kind"] == {"RuntimeError": 1}

"""Admin endpoints for interface engineers: inspect messages that failed and replay them."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, Protocol

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from gateway.errors import ConfigError
from gateway.ingest import IngestService
from gateway.security.principal import ADMIN, principal_of
from gateway.store.base import InboxRecord

Status = Literal["received", "processed", "error", "rejected"]
ReplayStatus = Literal["error", "rejected", "all"]
REPLAY_TOTALS = ("remapped", "changed", "retired", "errors")


def require_admin(request: Request) -> None:
    """403 unless the caller holds ``system/gateway.admin``."""
    if not principal_of(request).has(ADMIN):
        raise HTTPException(403, f"the {ADMIN} scope is required")


def _summary(record: InboxRecord) -> dict[str, Any]:
    return {"id": record.id, "site": record.site, "sender_application":
            record.sender_application, "sender_facility": record.sender_facility,
            "control_id": record.control_id, "type": record.message_type,
            "status": record.status, "error": record.error, "received": record.received,
            "transport": record.transport, "resources": record.resource_refs}


def admin_router(service: IngestService) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])
    store = service.store

    @router.get("/messages", summary="Inbound messages, newest first (no message content)")
    async def messages(status: Status | None = None,
                       site: str | None = None, since: str | None = None,
                       limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(store.inbox_list, status=status, site=site,
                                          since=since, limit=limit)
        return [_summary(r) for r in records]

    @router.get("/messages/{message_id}", summary="One inbound message with its report")
    async def message(message_id: int) -> dict[str, Any]:
        record = await asyncio.to_thread(store.inbox_get, message_id)
        if record is None:
            raise HTTPException(404, f"no message {message_id}")
        return {**_summary(record), "report": record.report}

    @router.post("/replay", summary="Re-map the stored messages that match the filters")
    async def replay_many(request: Request, status: ReplayStatus = "error",
                          site: str | None = None, since: str | None = None) -> dict[str, Any]:
        require_admin(request)
        request.state.audit = {"subtype": "replay", "entity": [],
                               "query": str(request.url.query)}
        records = await asyncio.to_thread(lambda: list(store.inbox_iter(
            status=None if status == "all" else status, site=site, since=since)))
        totals: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        for record in records:
            outcome = await service.replay_async(record)
            by_status[outcome.status] += 1
            totals.update(remapped=1, changed=outcome.changed, retired=outcome.retired,
                          errors=int(outcome.status in ("error", "rejected")))
        return {**{k: totals[k] for k in REPLAY_TOTALS}, "by_status": dict(by_status)}

    @router.post("/messages/{message_id}/replay",
                 summary="Re-map a stored message with the current mapping and site files")
    async def replay(message_id: int) -> dict[str, Any]:
        record = await asyncio.to_thread(store.inbox_get, message_id)
        if record is None:
            raise HTTPException(404, f"no message {message_id}")
        outcome = await service.replay_async(record)
        return {"id": message_id, "status": outcome.status, "ack_code": outcome.ack_code,
                "resources_changed": outcome.changed}

    return router


class _HasStatus(Protocol):
    def status(self) -> dict[str, object]: ...


def reload_router(reload: Callable[[], ConfigError | None],
                  sites: Callable[[], int]) -> APIRouter:
    """``POST /admin/reload``: re-read the site files; an invalid file keeps the running
    ones in force and the answer (422) says which file, line and field."""
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.post("/reload", summary="Re-read the site files (the old ones stay on error)")
    async def reload_sites(request: Request) -> JSONResponse:
        require_admin(request)
        request.state.audit = {"subtype": "reload", "entity": [], "query": ""}
        error = await asyncio.to_thread(reload)
        if error is not None:
            return JSONResponse({"status": "kept", "error": str(error),
                                 "detail": "site files not reloaded: the running "
                                           "configuration stays in force"}, status_code=422)
        return JSONResponse({"status": "reloaded", "sites": sites()})

    return router


def bus_admin_router(components: _HasStatus) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/bus", summary="Outbox relay backlog and hub projector lag")
    async def bus() -> dict[str, object]:
        return components.status()

    return router

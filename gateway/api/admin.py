"""Admin endpoints for interface engineers: inspect messages that failed and replay them."""

from __future__ import annotations

import asyncio
from typing import Any, Literal, Protocol

from fastapi import APIRouter, HTTPException, Query

from gateway.ingest import IngestService
from gateway.store.base import InboxRecord

Status = Literal["received", "processed", "error", "rejected"]


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


def bus_admin_router(components: _HasStatus) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/bus", summary="Outbox relay backlog and hub projector lag")
    async def bus() -> dict[str, object]:
        return components.status()

    return router

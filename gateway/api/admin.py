"""Admin endpoints for interface engineers: list the inbound messages (newest first, cursor
paging, filters), inspect one, replay them, reload the site files. Every endpoint wants the
``system/gateway.admin`` scope (``gateway.security.principal``)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, Protocol

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from gateway.errors import ConfigError
from gateway.hl7.mask import readable
from gateway.ingest import IngestService
from gateway.security.principal import ADMIN, RAW, principal_of
from gateway.store import InboxEntry, InboxFilter, InboxRecord, normalise_instant

Status = Literal["received", "processed", "error", "rejected"]
ReplayStatus = Literal["error", "rejected", "all"]
REPLAY_TOTALS = ("remapped", "changed", "retired", "errors")


def require_admin(request: Request) -> None:
    """403 unless the caller holds ``system/gateway.admin``."""
    if not principal_of(request).has(ADMIN):
        raise HTTPException(403, f"the {ADMIN} scope is required")


def _row(entry: InboxEntry) -> dict[str, Any]:
    """A compact list row: counts of what the message wrote, not every reference."""
    return {"id": entry.id, "site": entry.site, "sender_application": entry.sender_application,
            "sender_facility": entry.sender_facility, "control_id": entry.control_id,
            "type": entry.message_type, "status": entry.status, "error": entry.error,
            "received": entry.received, "transport": entry.transport,
            "resources": entry.resources}


def encode_cursor(received: str, row_id: int) -> str:
    """Opaque to callers: where the next page starts (keyset on received, id)."""
    return base64.urlsafe_b64encode(json.dumps([received, row_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        received, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(received), int(row_id)
    except (ValueError, TypeError) as exc:
        raise HTTPException(400, "cursor: not a cursor of this list (use the 'next' link "
                                 "of the previous page)") from exc


def _instant(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        normalise_instant(value)
    except ValueError as exc:
        raise HTTPException(400, f"{name}: not an ISO 8601 date or instant "
                                 "(e.g. 2026-11-01 or 2026-11-01T08:00:00Z)") from exc
    return value


def _summary(record: InboxRecord) -> dict[str, Any]:
    return {"id": record.id, "site": record.site, "sender_application":
            record.sender_application, "sender_facility": record.sender_facility,
            "control_id": record.control_id, "type": record.message_type,
            "status": record.status, "error": record.error, "received": record.received,
            "transport": record.transport, "resources": record.resource_refs}


def admin_router(service: IngestService) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])
    store = service.store

    @router.get("/messages", summary="Inbound messages, newest first, a page at a time")
    async def messages(request: Request, status: Status | None = None,
                       site: str | None = None,
                       type: str | None = Query(None, description="MSH-9, e.g. ORU or ORU^R01"),
                       control_id: str | None = Query(None, description="MSH-10"),
                       since: str | None = None, until: str | None = None,
                       cursor: str | None = None,
                       limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        require_admin(request)
        where = InboxFilter(status, site, type, control_id, _instant(since, "since"),
                            _instant(until, "until"))
        before = decode_cursor(cursor) if cursor else None
        rows = await asyncio.to_thread(store.inbox_page, where, before=before,
                                       limit=limit + 1)
        page, more = rows[:limit], len(rows) > limit
        next_url = (str(request.url.include_query_params(
            cursor=encode_cursor(page[-1].received, page[-1].id))) if more else None)
        return {"messages": [_row(e) for e in page], "next": next_url}

    @router.get("/messages/{message_id}", summary="One inbound message with its report")
    async def message(request: Request, message_id: int) -> dict[str, Any]:
        require_admin(request)
        record = await asyncio.to_thread(store.inbox_get, message_id)
        if record is None:
            raise HTTPException(404, f"no message {message_id}")
        return {**_summary(record), "report": record.report}

    @router.get("/messages/{message_id}/raw", response_class=PlainTextResponse,
                summary="The raw message (identity data: system/gateway.raw), PID masked "
                        "unless unmasked=true")
    async def raw_message(request: Request, message_id: int,
                          unmasked: bool = False) -> PlainTextResponse:
        if not principal_of(request).has(RAW):
            raise HTTPException(403, f"the {RAW} scope is required")
        record = await asyncio.to_thread(store.inbox_get, message_id)
        if record is None:
            raise HTTPException(404, f"no message {message_id}")
        if record.transport in ("file", "fhir") and not unmasked:
            raise HTTPException(400, "unmasked: a lab-export file or FHIR-source record "
                                     "cannot be masked; ask for unmasked=true")
        return PlainTextResponse(readable(record.raw, masked=not unmasked))

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
    async def replay(request: Request, message_id: int) -> dict[str, Any]:
        require_admin(request)
        record = await asyncio.to_thread(store.inbox_get, message_id)
        if record is None:
            raise HTTPException(404, f"no message {message_id}")
        outcome = await service.replay_async(record)
        return {"id": message_id, "status": outcome.status, "ack_code": outcome.ack_code,
                "resources_changed": outcome.changed, "resources_retired": outcome.retired}

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
    async def bus(request: Request) -> dict[str, object]:
        require_admin(request)
        return components.status()

    return router

"""``GET /admin/counters``: what hostile or broken input did to a running gateway, counted:
MLLP connections refused over the cap, frames cut off at the frame timeout, oversize frames;
messages abandoned at the mapping time budget or the resource limit; files and records that
a background task (drop folders, FHIR sources) could not handle and went past. Counts, types
and positions only, never content. ADMIN scope (``system/gateway.admin``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from gateway.failures import FailureCounters
from gateway.hl7.mllp import MllpServer
from gateway.ingest import IngestService
from gateway.security.principal import ADMIN, principal_of


def _forbidden() -> JSONResponse:
    return JSONResponse({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "forbidden",
         "diagnostics": f"the admin counters need the scope {ADMIN}"}]}, status_code=403)


def counters_router(service: IngestService, failures: FailureCounters,
                    mllp: Callable[[], MllpServer | None]) -> APIRouter:
    """``mllp``: the listener once started (the HTTP app starts before it)."""
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/counters", summary="Refused, cut-off and failed inputs, counted")
    async def counters(request: Request) -> Any:
        if not principal_of(request).has(ADMIN):
            return _forbidden()
        request.state.audit = {"subtype": "admin-counters", "entity": [], "query": ""}
        server = mllp()
        return {"mllp": asdict(server.stats) if server is not None else None,
                "ingest": {"over_time_budget": service.over_budget["time"],
                           "over_resource_limit": service.over_budget["resources"],
                           "message_time_budget": service.message_time_budget,
                           "max_resources_per_message": service.max_resources},
                "background": failures.snapshot()}

    return router

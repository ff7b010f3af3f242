"""``GET /metrics`` (scope ``system/gateway.metrics``, which ``system/gateway.admin`` does
not imply: a scraper gets a token of its own) and ``GET /admin/alerts`` (admin)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.observability.alerts import Alerts
from gateway.observability.metrics import CONTENT_TYPE, GatewayMetrics
from gateway.security.principal import ADMIN, METRICS, principal_of


def _forbidden(scope: str) -> JSONResponse:
    return JSONResponse({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "forbidden",
         "diagnostics": f"this request needs the scope {scope}"}]}, status_code=403)


def metrics_router(metrics: GatewayMetrics) -> APIRouter:
    router = APIRouter(tags=["admin"])

    @router.get("/metrics", summary="Prometheus metrics (text format)",
                response_class=Response)
    async def scrape(request: Request) -> Response:
        if not principal_of(request).has(METRICS):
            return _forbidden(METRICS)
        request.state.audit = {"subtype": "metrics", "entity": [], "query": ""}
        body = await run_in_threadpool(metrics.exposition)  # sources may ask the store
        return Response(body, media_type=CONTENT_TYPE)

    return router


def alerts_router(alerts: Alerts) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/alerts", summary="The alerts raised now")
    async def current(request: Request) -> Any:
        if not principal_of(request).has(ADMIN):
            return _forbidden(ADMIN)
        request.state.audit = {"subtype": "admin-alerts", "entity": [], "query": ""}
        return {"evaluated": alerts.evaluated, "interval_seconds": alerts.settings.interval,
                "alerts": [asdict(a) for a in alerts.current()]}

    return router

"""The HTTP application: FHIR API (hub), HL7 v2 over HTTP and admin endpoints (edge),
``/healthz`` (both). Routes are thin: they frame, call and respond."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from gateway import __version__


def create_app(*, routers: list[Any], ready: Callable[[], bool] = lambda: True,
               setup: list[Callable[[FastAPI], None]] | None = None,
               health: dict[str, Callable[[], Any]] | None = None) -> FastAPI:
    """``health``: more facts for ``/healthz`` (name → a function giving its state)."""
    # /docs and /redoc from the assets of the fastapi-offline package: no CDN
    app = FastAPIOffline(title="PlaGenCell gateway", version=__version__,
                  description="HL7 v2 and lab exports in, pseudonymised FHIR R4 out.")

    @app.get("/healthz", tags=["admin"], summary="200 once the HTTP and MLLP listeners accept")
    async def healthz() -> JSONResponse:
        ok = ready()
        more = {name: state() for name, state in (health or {}).items()}
        return JSONResponse({"status": "ok" if ok else "starting", "version": __version__,
                             **more}, status_code=200 if ok else 503)

    for router in routers:
        app.include_router(router)
    for install in setup or []:
        install(app)
    return app

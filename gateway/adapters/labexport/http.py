"""``POST /lab-exports?site=ID``: a ``text/csv`` (or TSV) body or an ``.xlsx`` multipart
upload → the import report (JSON; ``Accept: application/fhir+json`` gets the
OperationOutcome). 200 when every row was accepted, 422 when some or all were rejected or
the file could not be read, 404 for an unknown site."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse

from gateway.adapters.labexport.importer import import_export
from gateway.adapters.labexport.report import ImportReport
from gateway.adapters.loader import Network
from gateway.store.base import Store

MAX_UPLOAD = 50 * 2**20


async def _body(request: Request) -> tuple[bytes, str]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        if upload is None:
            return b"", "upload"
        return await upload.read(), upload.filename or "upload"
    return await request.body(), request.headers.get("x-filename", "upload")


def _outcome(status: int, text: str) -> JSONResponse:
    return JSONResponse({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid" if status == 400 else "not-found",
         "diagnostics": text}]}, status_code=status)


def labexport_router(store: Store | Callable[[], Store], network: Network,
                     pseudonym_key: bytes,
                     on_report: Callable[[str, ImportReport], None] | None = None
                     ) -> APIRouter:
    """``store`` may be a callable, for an app that opens its store at start-up;
    ``on_report`` is told each import's site and report (metrics)."""
    router = APIRouter(tags=["lab exports"])

    @router.post("/lab-exports")
    async def post_lab_export(request: Request, site: str,
                              layout: str | None = None) -> JSONResponse:
        if site not in network.sites:
            return _outcome(404, f"no site {site!r}")
        data, filename = await _body(request)
        if not data:
            return _outcome(400, "empty upload: send text/csv or a multipart .xlsx file")
        if len(data) > MAX_UPLOAD:
            return _outcome(400, f"file larger than {MAX_UPLOAD} bytes")
        target = store() if callable(store) else store
        report = await run_in_threadpool(import_export, target, network, site, data,
                                         filename, pseudonym_key, layout=layout)
        if on_report is not None:
            on_report(site, report)
        fhir = "fhir+json" in request.headers.get("accept", "")
        body = report.to_outcome() if fhir else report.to_json()
        return JSONResponse(body, status_code=200 if report.ok else 422,
                            media_type="application/fhir+json" if fhir else None)

    return router

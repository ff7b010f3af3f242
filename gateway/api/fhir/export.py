"""FHIR Bulk Data Access 2.0 at ``/fhir``: thin routes over ``gateway.export``.

* ``GET|POST /fhir/$export``, ``/fhir/Patient/$export``, ``/fhir/Group/{id}/$export``:
  kick-off, 202 + ``Content-Location`` (the status URL);
* ``GET /fhir/$export-poll/{job}``: 202 + ``X-Progress``/``Retry-After`` while it runs,
  200 + the manifest when done;
* ``DELETE /fhir/$export-poll/{job}``: cancel (or forget a finished job), files removed;
* ``GET /fhir/$export-file/{job}/{Type}.ndjson``: one output file (gzip when accepted).

Callers need the ``system/gateway.export`` scope and read (``r``) on every exported type;
a job and its files belong to the client that started it (any other: 404). This router
must be included before the generic FHIR router (whose ``/fhir/{type}/{id}`` would match
``/fhir/Patient/$export``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from gateway.errors import Gone
from gateway.export.manager import ExportManager, TooManyExports
from gateway.export.request import (
    ExportRequest,
    ExportRequestError,
    pairs_of_parameters,
    read_request,
)
from gateway.security.access import Restriction, restriction_of
from gateway.security.principal import EXPORT, Principal, principal_of

from .negotiation import check_format, fhir_response, http_date, read_json
from .operations import public_url
from .outcomes import FhirError, information

NDJSON = "application/fhir+ndjson"
_BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
# what ``export_router`` serves, for the CapabilityStatement (``fhir_router``)
CAPABILITY_OPERATIONS = {
    "": [{"name": "export", "definition": f"{_BULK}/export"}],
    "Patient": [{"name": "export", "definition": f"{_BULK}/patient-export"}],
    "Group": [{"name": "export", "definition": f"{_BULK}/group-export"}],
}
RETRY_AFTER = "2"  # s between polls


def export_router(manager: ExportManager, base_url: Callable[[], str] | None = None
                  ) -> APIRouter:
    """``base_url``: the public ``/fhir`` base for the status and file URLs (the gateway's
    ``--public-url``); without it, the request's own base (tests, loopback)."""
    router = APIRouter(prefix="/fhir", tags=["bulk data"])

    def base(request: Request) -> str:
        return base_url() if base_url else f"{str(request.base_url).rstrip('/')}/fhir"

    async def system(request: Request) -> Response:
        return await _kick_off(manager, request, "system", None, base(request))

    async def patient(request: Request) -> Response:
        return await _kick_off(manager, request, "patient", None, base(request))

    async def group(id: str, request: Request) -> Response:
        return await _kick_off(manager, request, "group", id, base(request))

    for path, endpoint in (("/$export", system), ("/Patient/$export", patient),
                           ("/Group/{id}/$export", group)):
        for method in ("GET", "POST"):  # one operation id per method (/openapi.json)
            router.add_api_route(path, endpoint, methods=[method],
                                 operation_id=f"{endpoint.__name__}_export_{method.lower()}")

    @router.get("/$export-poll/{job}")
    async def status(job: str, request: Request) -> Response:
        found = await _own_job(manager, job, request)
        return _status_answer(found)

    @router.delete("/$export-poll/{job}")
    async def cancel(job: str, request: Request) -> Response:
        await _own_job(manager, job, request)
        await run_in_threadpool(manager.cancel, job)
        return fhir_response(information(f"export {job} cancelled; its files are removed"),
                             202)

    @router.get("/$export-file/{job}/{name}")
    async def download(job: str, name: str, request: Request) -> Response:
        found = await _own_job(manager, job, request)
        path = manager.file(job, name) if found["status"] == "completed" else None
        if path is None:
            raise FhirError.of("not-found", f"export {job} has no file {name!r}")
        return FileResponse(path, media_type=NDJSON)

    return router


async def _kick_off(manager: ExportManager, request: Request, kind: str,
                    group_id: str | None, base: str) -> Response:
    check_format(request)
    prefer = ",".join(request.headers.getlist("prefer"))
    if "respond-async" not in prefer:
        raise FhirError.of("invalid", "$export runs asynchronously: send the header "
                           "'Prefer: respond-async'", status=400, expression=["Prefer"])
    principal = _exporter(request, manager)
    body = await read_json(request) if request.method == "POST" else None
    try:
        pairs = (pairs_of_parameters(body) if body is not None
                 else list(request.query_params.multi_items()))
        wanted = read_request(kind, pairs, group_id,
                              lenient="handling=lenient" in prefer.replace(" ", ""))
    except ExportRequestError as exc:
        raise FhirError.of("invalid", str(exc), expression=[exc.parameter]) from exc
    _check_types(wanted, principal)
    _client_pseudonyms(wanted, principal)
    patients, study = (await run_in_threadpool(_cohort, manager, group_id, wanted,
                                               restriction_of(principal))
                       if group_id is not None else (wanted.patients, None))
    if wanted.patients is not None and patients is not None:  # within the Group's members
        patients = sorted(set(patients) & set(wanted.patients))
    try:
        url = public_url(request, base, list(request.query_params.multi_items()))
        job = await run_in_threadpool(manager.kick_off, wanted, principal, url,
                                      base, patients, study)
    except TooManyExports as exc:
        error = FhirError.of("throttled", f"{manager.max_active} exports are running; "
                             "try again later", status=429)
        error.headers["Retry-After"] = "30"
        raise error from exc
    request.state.audit = {"subtype": "export", "entity": [f"Group/{group_id}"]
                           if group_id else [], "query": request.url.query}
    return fhir_response(information(f"export {job} accepted"), 202,
                         {"Content-Location": f"{base}/$export-poll/{job}"})


def _exporter(request: Request, manager: ExportManager) -> Principal:
    principal = principal_of(request)
    if not principal.has(EXPORT):
        raise FhirError.of("forbidden", "Bulk Data export needs the scope "
                           f"{EXPORT}", status=403)
    if principal.restricted and manager.restriction is None:
        raise FhirError.of("forbidden", "this client is restricted to some studies or sites; "
                           "restricted exports are not available yet", status=403)
    return principal


def _check_types(wanted: ExportRequest, principal: Principal) -> None:
    refused = [t for t in wanted.types if not principal.may(t, "r")]
    if wanted.explicit_types and refused:
        raise FhirError.of("forbidden", f"this client may not read {', '.join(refused)}",
                           status=403, expression=["_type"])
    wanted.types = [t for t in wanted.types if t not in refused]
    if not wanted.types:
        raise FhirError.of("forbidden", "this client may read none of the exported types",
                           status=403)


def _client_pseudonyms(wanted: ExportRequest, principal: Principal) -> None:
    """A client registered for per-study pseudonyms (``pseudonymize: study`` in its
    registration, ``Principal.extra``) gets them on every export, and only study exports."""
    if principal.extra.get("pseudonymize") != "study":
        return
    if wanted.kind != "group":
        raise FhirError.of("forbidden", "this client receives study exports with per-study "
                           "pseudonyms only: GET /fhir/Group/{id}/$export", status=403)
    wanted.pseudonymize = "study"


def _cohort(manager: ExportManager, group_id: str, wanted: ExportRequest,
            restrict: Restriction | None) -> tuple[list[str], str | None]:
    """The Group's member Patient ids and the study it is the cohort of. A Group the
    caller may not see is not known (404), as on a read."""
    try:
        group = manager.store.read("Group", group_id, restrict=restrict)
    except Gone:  # a deleted Group is not there either
        group = None
    if group is None:
        raise FhirError.of("not-found", f"Group/{group_id} is not known", status=404)
    patients = sorted({m["entity"]["reference"].partition("/")[2]
                       for m in group.get("member", [])
                       if str((m.get("entity") or {}).get("reference", "")).startswith(
                           "Patient/")})
    study = _study_of(group)
    if wanted.pseudonymize and study is None:
        raise FhirError.of("invalid", f"Group/{group_id} is not a study cohort: "
                           "pseudonymize=study needs one", expression=["pseudonymize"])
    return patients, study


def _study_of(group: dict[str, Any]) -> str | None:
    links = [c.get("valueReference") for c in group.get("characteristic", [])]
    links += [e.get("valueReference") for e in group.get("extension", [])]
    for link in links:
        reference = str((link or {}).get("reference", ""))
        if reference.startswith("ResearchStudy/"):
            return reference.partition("/")[2]
    return None


async def _own_job(manager: ExportManager, job: str, request: Request) -> dict[str, Any]:
    principal = principal_of(request)
    if not principal.has(EXPORT):
        raise FhirError.of("forbidden", f"Bulk Data export needs the scope {EXPORT}",
                           status=403)
    await run_in_threadpool(manager.sweep)
    found = await run_in_threadpool(manager.job_for, job, principal)
    if found is None:
        raise FhirError.of("not-found", f"no export {job} (unknown, expired or cancelled)")
    return found


def _status_answer(job: dict[str, Any]) -> Response:
    if job["status"] in ("accepted", "in-progress"):
        return Response(b"", status_code=202, headers={
            "X-Progress": job["progress"] or job["status"], "Retry-After": RETRY_AFTER})
    if job["status"] == "error":
        raise FhirError.of("exception", job["error"] or "the export failed", status=500)
    headers = {"Expires": http_date(job["expires"])} if job["expires"] else {}
    return Response(orjson.dumps(job["manifest"]), status_code=200, headers=headers,
                    media_type="application/json")

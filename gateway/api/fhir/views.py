"""SQL-on-FHIR v2 views at ``/fhir``: thin routes over ``gateway.views`` and
``gateway.store.views``.

* ``POST|GET /fhir/$viewdefinition-run``: run an inline (``viewResource``, POST) or stored
  (``viewReference``) ViewDefinition (R4 mode: system level; parameters in
  ``gateway.api.fhir.viewrun``); ``GET|POST /fhir/ViewDefinition/{id}/$viewdefinition-run``
  (and ``…/$run``, the specification's earlier name) run a stored one;
* ``/fhir/ViewDefinition``: create, read, update, delete and search (``name``, ``url``)
  stored ViewDefinitions, checked on every write like an inline one (plus ``status``).

The answer streams: rows are made a page of resources at a time from the store (constant
memory) and sent as JSON, NDJSON or CSV. The first page is made before the answer starts,
so a view that fails on the data at once (a column with several values without
``collection: true``) is a 400; a failure further on ends the stream without its end (an
incomplete chunked body, which clients report as an error), never with a partial file
that looks whole.

Access: the route table asks a token (``$viewdefinition-run``) or the SMART scope on
``ViewDefinition`` (the instance run and the CRUD); the run then needs ``r`` on the view's
resource type when it reads server data, ``r`` on ViewDefinition for a ``viewReference``,
and a study- or site-restricted caller gets only the rows of the resources it may see
(the restriction is applied in the store's SQL, as for ``$export``). Include this router
before the generic FHIR router.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from gateway.errors import Gone
from gateway.security.access import Restriction, restriction_of
from gateway.security.principal import Principal, principal_of
from gateway.store import (
    VIEW_TYPE,
    SqlStore,
    delete_view,
    list_views,
    read_view,
    save_view,
    view_resources,
)
from gateway.views.definition import View, ViewError, compile_view
from gateway.views.engine import Row, RowError, row_batches
from gateway.views.output import MEDIA_TYPES, encode

from .interactions import new_id, parse_if_match
from .negotiation import fhir_response, read_json, version_headers
from .outcomes import FhirError, information
from .routes import call
from .validation import resource_types
from .viewrun import RunRequest, collect, read_run

log = logging.getLogger(__name__)
RUN_DEFINITION = "http://sql-on-fhir.org/OperationDefinition/$viewdefinition-run"
CAPABILITY_OPERATIONS = {"": [{"name": "viewdefinition-run", "definition": RUN_DEFINITION}]}
CAPABILITY_ENTRY = {
    "type": VIEW_TYPE,
    "profile": "https://sql-on-fhir.org/ig/StructureDefinition/ViewDefinition",
    "interaction": [{"code": c} for c in ("read", "vread", "create", "update", "delete",
                                          "search-type")],
    "searchParam": [{"name": "name", "type": "string"}, {"name": "url", "type": "uri"}],
    "operation": [{"name": "viewdefinition-run", "definition": RUN_DEFINITION}]}
STATUSES = ("draft", "active", "retired", "unknown")


def with_view_operations(operations: Mapping[str, Sequence[dict[str, str]]]
                         ) -> dict[str, list[dict[str, str]]]:
    """``operations`` (``fhir_router``'s ``capability_operations``) and the one this router
    serves: for the CapabilityStatement of a gateway that mounts it."""
    merged = {rtype: list(ops) for rtype, ops in operations.items()}
    for rtype, ops in CAPABILITY_OPERATIONS.items():
        merged.setdefault(rtype, []).extend(ops)
    return merged
PAGE = 1000  # resources per page read from the store


def views_router(store: SqlStore, base_url: Callable[[], str] | None = None, *,
                 page: int = PAGE) -> APIRouter:
    """``base_url``: the public ``/fhir`` base (``--public-url``), to resolve an absolute
    ``viewReference``; without it, the request's own base. ``page``: resources read from
    the store at a time (one batch of rows)."""
    router = APIRouter(prefix="/fhir", tags=["views"])

    def base(request: Request) -> str:
        return base_url() if base_url else f"{str(request.base_url).rstrip('/')}/fhir"

    async def run_system(request: Request) -> Response:
        body = await read_json(request) if request.method == "POST" else None
        return await _run(store, request, base(request), body, None, page)

    async def run_instance(id: str, request: Request) -> Response:
        body = await read_json(request) if request.method == "POST" else None
        return await _run(store, request, base(request), body, id, page)

    for path, endpoint, name in (
            ("/$viewdefinition-run", run_system, "run_view"),
            ("/ViewDefinition/{id}/$viewdefinition-run", run_instance, "run_stored_view"),
            ("/ViewDefinition/{id}/$run", run_instance, "run_stored_view_short")):
        for method in ("GET", "POST"):  # one operation id per method (/openapi.json)
            router.add_api_route(path, endpoint, methods=[method],
                                 operation_id=f"{name}_{method.lower()}")
    _crud_routes(router, store, base)
    return router


async def _run(store: SqlStore, request: Request, base: str, body: dict[str, Any] | None,
               instance: str | None, page: int) -> Response:
    principal = principal_of(request)
    given = collect(body, list(request.query_params.multi_items()))
    wanted = read_run(given, request.headers.get("accept"), instance=instance)
    source = "viewResource" if wanted.view is not None else "viewReference"
    definition = wanted.view
    if definition is None:
        definition = await _stored(store, principal, wanted.reference or "", base,
                                   instance is not None)
    view = _compiled(definition, source)
    pages: Iterator[list[dict[str, Any]]]
    if wanted.resources is not None:
        pages = iter([wanted.resources])
    else:
        if not principal.may(view.resource, "r"):
            raise FhirError.of("forbidden", f"this client may not read {view.resource}",
                               status=403, expression=[f"{source}.resource"])
        restrict = restriction_of(principal)
        patients = await call(_patients, store, wanted, restrict)
        pages = view_resources(store, view.resource, since=wanted.since, patients=patients,
                               principal=_recorded(principal), page=page)
    batches = row_batches(view, pages, limit=wanted.limit)
    first = await run_in_threadpool(_first_batch, batches, source)
    request.state.audit = {"subtype": "viewdefinition-run", "query": wanted.audit_query(),
                           "entity": ([f"{VIEW_TYPE}/{wanted.reference}"]
                                      if instance is not None else [])
                           + [f"Group/{g}" for g in wanted.groups]}
    chunks = encode(wanted.format, view.names, chain([first], _guarded(batches)),
                    header=wanted.header)
    return StreamingResponse(chunks, media_type=MEDIA_TYPES[wanted.format])


def _recorded(principal: Principal) -> dict[str, Any]:
    """The caller as ``recorded_restriction`` takes it (the export's record of it)."""
    return {"studies": None if principal.studies is None else sorted(principal.studies),
            "sites": None if principal.sites is None else sorted(principal.sites),
            "anonymous": principal.anonymous}


async def _stored(store: SqlStore, principal: Principal, reference: str, base: str,
                  instance: bool) -> dict[str, Any]:
    if not principal.may(VIEW_TYPE, "r"):
        raise FhirError.of("forbidden", f"this client may not read {VIEW_TYPE}",
                           status=403, expression=["viewReference"])
    found = await call(_resolve, store, reference, base)
    if found is None:
        if instance:
            raise FhirError.of("not-found", f"{VIEW_TYPE}/{reference} is not known")
        raise FhirError.of("invalid", f"viewReference {reference!r} names no stored "
                           "ViewDefinition", status=400, expression=["viewReference"])
    return found


def _resolve(store: SqlStore, reference: str, base: str) -> dict[str, Any] | None:
    """``ViewDefinition/{id}`` (relative or on this base), an id, or a canonical URL."""
    relative = reference.removeprefix(base.rstrip("/") + "/")
    parts = relative.split("/")
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == VIEW_TYPE):
        return read_view(store, parts[-1])
    url = reference.split("|")[0]
    found = list_views(store, url=url)
    return found[0] if found else None


def _compiled(definition: dict[str, Any], source: str) -> View:
    try:
        return compile_view(definition, resource_types())
    except ViewError as exc:
        where = f"{source}.{exc.where}" if exc.where else source
        raise FhirError.of("invalid", f"the ViewDefinition cannot run: {exc.reason}",
                           status=400, expression=[where]) from exc


def _patients(store: SqlStore, wanted: RunRequest, restrict: Restriction | None
              ) -> list[str] | None:
    """The Patients whose compartments the view may read (None: all)."""
    chosen: set[str] | None = None
    if wanted.patient is not None:
        if _get(store, "Patient", wanted.patient, restrict) is None:
            raise FhirError.of("invalid", f"patient Patient/{wanted.patient} is not known",
                               status=400, expression=["patient"])
        chosen = {wanted.patient}
    if wanted.groups:
        members: set[str] = set()
        for group_id in wanted.groups:
            group = _get(store, "Group", group_id, None)
            if group is None:
                raise FhirError.of("invalid", f"group Group/{group_id} is not known",
                                   status=400, expression=["group"])
            members |= _member_patients(group)
        chosen = members if chosen is None else chosen & members
    return None if chosen is None else sorted(chosen)


def _get(store: SqlStore, rtype: str, id: str, restrict: Restriction | None
         ) -> dict[str, Any] | None:
    try:
        return store.read(rtype, id, restrict=restrict)
    except Gone:
        return None


def _member_patients(group: dict[str, Any]) -> set[str]:
    return {str(m["entity"]["reference"]).partition("/")[2]
            for m in group.get("member") or []
            if str((m.get("entity") or {}).get("reference", "")).startswith("Patient/")}


def _first_batch(batches: Iterator[list[Row]], source: str) -> list[Row]:
    try:
        return next(batches, [])
    except RowError as exc:
        raise FhirError.of("invalid", f"the ViewDefinition cannot run on this data: {exc}",
                           status=400, expression=[source]) from exc


def _guarded(batches: Iterator[list[Row]]) -> Iterator[list[Row]]:
    try:
        yield from batches
    except RowError as exc:
        log.warning("a view stopped in the middle of its answer: %s", exc)
        raise


# -- stored ViewDefinitions ---------------------------------------------------------------

def _crud_routes(router: APIRouter, store: SqlStore, base: Callable[[Request], str]) -> None:
    @router.post(f"/{VIEW_TYPE}")
    async def create(request: Request) -> Response:
        view = _checked(await read_json(request))
        view["id"] = new_id()
        change = await call(save_view, store, view)
        assert change.resource is not None
        return fhir_response(change.resource, 201, {
            **version_headers(change.resource),
            "Location": f"{base(request)}/{VIEW_TYPE}/{view['id']}/_history/"
                        f"{change.version_id}"})

    @router.get(f"/{VIEW_TYPE}")
    async def search(request: Request) -> Response:
        params = request.query_params
        known = {"name", "url", "_count", "_format"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise FhirError.of("invalid", f"{VIEW_TYPE} has no search parameter "
                               f"{unknown[0]!r}; known: name, url", status=400,
                               expression=[unknown[0]])
        found = await call(list_views, store, name=params.get("name"), url=params.get("url"))
        return fhir_response(_searchset(base(request), found))

    @router.get(f"/{VIEW_TYPE}/{{id}}")
    async def read(id: str) -> Response:
        view = await call(read_view, store, id)
        if view is None:
            raise FhirError.of("not-found", f"{VIEW_TYPE}/{id} is not known")
        return fhir_response(view, 200, version_headers(view))

    @router.get(f"/{VIEW_TYPE}/{{id}}/_history/{{vid}}")
    async def vread(id: str, vid: str) -> Response:
        """The version a create or update names in its ``Location``."""
        view = await call(_version, store, id, vid)
        if view is None:
            raise FhirError.of("not-found", f"{VIEW_TYPE}/{id}/_history/{vid} is not known")
        return fhir_response(view, 200, version_headers(view))

    @router.put(f"/{VIEW_TYPE}/{{id}}")
    async def update(id: str, request: Request) -> Response:
        view = _checked(await read_json(request))
        if view.get("id") != id:
            raise FhirError.of("invalid", "the resource id must be the id in the URL",
                               status=400, expression=["ViewDefinition.id"])
        if_match = parse_if_match(request.headers.get("if-match"))
        change = await call(save_view, store, view, if_match=if_match)
        assert change.resource is not None
        return fhir_response(change.resource, 201 if change.created else 200,
                             version_headers(change.resource))

    @router.delete(f"/{VIEW_TYPE}/{{id}}")
    async def delete(id: str) -> Response:
        if not await call(delete_view, store, id):
            raise FhirError.of("not-found", f"{VIEW_TYPE}/{id} is not known")
        return fhir_response(information(f"{VIEW_TYPE}/{id} deleted"))


def _version(store: SqlStore, id: str, vid: str) -> dict[str, Any] | None:
    if not vid.isdigit():
        return None
    try:
        return store.vread(VIEW_TYPE, id, int(vid))
    except Gone:  # a deleted version: not there either
        return None


def _checked(view: dict[str, Any]) -> dict[str, Any]:
    """A ViewDefinition fit to be stored: one that can run, with a status."""
    if view.get("resourceType") != VIEW_TYPE:
        raise FhirError.of("invalid", f"this endpoint stores {VIEW_TYPE} resources",
                           status=400, expression=["resourceType"])
    if view.get("status") not in STATUSES:
        raise FhirError.of("invalid", f"status is required: one of {', '.join(STATUSES)}",
                           status=400, expression=[f"{VIEW_TYPE}.status"])
    _compiled(view, VIEW_TYPE)
    return view


def _searchset(base: str, views: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": new_id(), "type": "searchset",
            "total": len(views),
            "entry": [{"fullUrl": f"{base}/{VIEW_TYPE}/{v['id']}", "resource": v,
                       "search": {"mode": "match"}} for v in views]}

"""The FHIR REST interactions at ``/fhir``: thin routes over ``interactions``.

Each route frames (negotiation, headers), calls the store in a worker thread, and answers
with FHIR JSON bytes. Errors are raised as ``FhirError`` and answered by the handler of
``install_fhir_errors``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.security.access import Restriction, restriction_of
from gateway.security.enforce import fhir_need
from gateway.security.principal import principal_of
from gateway.store import Budget, Resource, Store

from . import interactions as ix
from .budgets import RequestBudgets
from .bundles import history_bundle, response_entry
from .capability import Capability
from .fastread import RawReader, RawResource
from .history import history_page
from .negotiation import (
    check_body_type,
    check_format,
    fhir_response,
    headers_for,
    not_modified,
    prefer,
    read_json,
    version_headers,
    write_response,
)
from .outcomes import FhirError, from_gateway_error, information
from .search import search_bundle
from .summary import apply_elements, apply_summary, parse_elements
from .transaction import check_entries, run_batch, run_transaction

T = TypeVar("T")
MAX_HISTORY = 1000
SYSTEM_PATHS = frozenset({"metadata", "_history", "_search"})


class FhirApi:
    """The state behind the routes: the store, the capability, how to name the base."""

    def __init__(self, store: Store, *, base_url: str | Callable[[], str] | None = None,
                 origin: str | None = None,
                 capability_resources: Sequence[dict[str, Any]] = (),
                 security: Callable[[str], dict[str, Any]] | None = None,
                 budgets: RequestBudgets | None = None,
                 capability_operations: Mapping[str, Sequence[dict[str, str]]] | None = None
                 ) -> None:
        self.store = store
        self.budgets = budgets or RequestBudgets()
        self.base_url = base_url
        self.origin = origin
        self.capability = Capability(others=capability_resources, security=security,
                                     operations=capability_operations)
        self.reader = RawReader(store)

    async def read_now(self, rtype: str, id: str) -> RawResource:
        """A read by primary key without a hop to a worker thread (see ``fastread``)."""
        try:
            return await self.reader.read_async(rtype, id)
        except GatewayError as exc:
            raise from_gateway_error(exc) from exc

    def base(self, request: Request) -> str:
        """The public FHIR base: configured (``--public-url``); from the request only
        where no configuration is given (an app embedded in tests or tools)."""
        if self.base_url is None:
            return f"{str(request.base_url).rstrip('/')}/fhir"
        root = self.base_url() if callable(self.base_url) else self.base_url
        return root.rstrip("/")

    def url(self, request: Request, query: str | None = None) -> str:
        """The request's own URL on the public base (``self``/``next`` links)."""
        path = request.url.path.removeprefix("/fhir")
        query = request.url.query if query is None else query
        return f"{self.base(request)}{path}" + (f"?{query}" if query else "")

    def context(self, request: Request) -> ix.WriteContext:
        """The bus headers of an API write, shaped as ingest's (``origin``, ``site``,
        ``message-id``, ``traceparent``); the client's trace is kept when it sends one."""
        message_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        headers = {"site": "api", "message-id": message_id,
                   "traceparent": request.headers.get("traceparent")
                   or f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
        if self.origin:
            headers["origin"] = self.origin
        source = f"urn:plagencell:node:{self.origin}" if self.origin else None
        return ix.WriteContext(source=source, headers=headers, restrict=restricted(request))

    def served(self, rtype: str) -> str:
        if not self.capability.serves(rtype):
            raise FhirError.of("not-found", f"resource type {rtype!r} is not served here; "
                               "see /fhir/metadata")
        return rtype

    def writable(self, rtype: str) -> str:
        if rtype in SYSTEM_PATHS:
            raise FhirError.of("not-supported", f"/{rtype} is read-only")
        self.served(rtype)
        if not self.capability.writable(rtype):
            raise FhirError.of("not-supported", f"{rtype} is read-only on this server")
        return rtype


def restricted(request: Request) -> Restriction | None:
    """The caller's data restriction (None: it may see everything)."""
    return restriction_of(principal_of(request))


def searcher(store: Store, restrict: Restriction | None) -> Callable[..., Any]:
    """``store.search`` as the caller may use it."""
    return store.search if restrict is None else partial(store.search, restrict=restrict)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store call in a worker thread; store errors become OperationOutcomes."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except GatewayError as exc:
        raise from_gateway_error(exc) from exc


class FhirRoute(APIRoute):
    """Every FHIR route first checks ``_format``/``Accept`` (406), without the cost of a
    FastAPI dependency on the hot path."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            check_format(request)
            response: Response = await handler(request)
            return response

        return checked


def fhir_router(store: Store, *, base_url_from_request: bool = True,
                base_url: str | Callable[[], str] | None = None, origin: str | None = None,
                capability_resources: Sequence[dict[str, Any]] = (),
                security: Callable[[str], dict[str, Any]] | None = None,
                budgets: RequestBudgets | None = None,
                capability_operations: Mapping[str, Sequence[dict[str, str]]] | None = None
                ) -> APIRouter:
    """The ``/fhir`` router. ``base_url`` (when not taken from the request) is the public
    base used in ``fullUrl``, ``Location`` and paging links; ``origin`` names this node in
    the bus headers of API writes; ``capability_resources`` are CapabilityStatement
    entries of types other routers serve under ``/fhir`` (so that ``/fhir/metadata`` tells
    the whole truth), ``capability_operations`` the operations they serve; ``security``
    makes ``rest.security`` from the base URL; ``budgets`` bounds searches in time (and
    lets a graceful stop cancel them)."""
    api = FhirApi(store, base_url=None if base_url_from_request else base_url, origin=origin,
                  capability_resources=capability_resources, security=security,
                  budgets=budgets, capability_operations=capability_operations)
    router = APIRouter(prefix="/fhir", route_class=FhirRoute)
    _read_routes(router, api)  # first: matched in order, and reads are the hot path
    _system_routes(router, api)
    _type_routes(router, api)
    _instance_routes(router, api)
    return router


# -- reads -------------------------------------------------------------------------------------

def _read_routes(router: APIRouter, api: FhirApi) -> None:
    @router.get("/metadata")
    async def metadata(request: Request) -> Response:
        return fhir_response(api.capability.statement(api.base(request)))

    @router.get("/{rtype}/_history")
    async def type_history(rtype: str, request: Request) -> Response:
        return await _history(api, request, api.served(rtype), None)

    async def read(request: Request) -> Response:
        """The hot path: a plain Starlette route (no FastAPI parameter solving)."""
        check_format(request)
        rtype, id = request.path_params["rtype"], request.path_params["id"]
        api.served(rtype)
        if rtype == "SearchParameter":
            return fhir_response(api.capability.search_parameter(id, api.base(request)))
        restrict = restricted(request)
        if restrict is not None:  # the slower path: the restriction is checked in SQL
            resource = await call(ix.read, api.store, rtype, id, None, restrict)
            return _resource_answer(request, resource)
        raw = await api.read_now(rtype, id)
        headers = headers_for(raw.version_id, raw.last_updated)
        if not_modified(request, raw.version_id, raw.last_updated):
            return Response(b"", status_code=304, headers=headers)
        if request.scope["query_string"]:  # (request.url would parse the whole URL)
            return fhir_response(_shaped(raw.content, request), 200, headers)
        return fhir_response(raw.content, 200, headers)

    router.add_route(f"{router.prefix}/{{rtype}}/{{id}}", read, methods=["GET"],
                     include_in_schema=False)


# -- system level ------------------------------------------------------------------------------

def _system_routes(router: APIRouter, api: FhirApi) -> None:
    @router.post("")
    @router.post("/")
    async def bundle(request: Request) -> Response:
        body = await read_json(request)
        if body["resourceType"] != "Bundle" or body.get("type") not in ("batch", "transaction"):
            raise FhirError.of("invalid", "POST /fhir takes a Bundle of type batch or "
                               "transaction", expression=["Bundle.type"])
        request.state.audit = {"subtype": body["type"]}  # batch | transaction
        run = run_transaction if body["type"] == "transaction" else run_batch
        base, ctx = api.base(request), api.context(request)
        principal = principal_of(request)
        if not principal.anonymous:
            check_entries(body, base, lambda method, parts: fhir_need(method, parts)
                          .refusal(principal))
        get = _entry_getter(api, base, prefer(request).strict, restricted(request))
        answer = await call(run, api.store, body, ctx, base, get)
        if prefer(request).return_ == "minimal":
            _minimal_entries(body, answer)
        return fhir_response(answer)

    @router.get("/_history")
    async def system_history(request: Request) -> Response:
        return await _history(api, request, None, None)


def _shaped(content: bytes, request: Request) -> bytes:
    """``_summary`` / ``_elements`` on a read (the bytes are served untouched otherwise)."""
    summary, elements = (request.query_params.get(k) for k in ("_summary", "_elements"))
    if summary in (None, "false") and not elements:
        return content
    resource = orjson.loads(content)
    if summary not in (None, "false", "count"):
        return orjson.dumps(apply_summary(resource, summary))
    return orjson.dumps(apply_elements(resource, parse_elements(elements)))


def _minimal_entries(bundle: dict[str, Any], answer: dict[str, Any]) -> None:
    """``Prefer: return=minimal``: write entries answer without the resource."""
    for sent, got in zip(bundle.get("entry") or [], answer["entry"], strict=True):
        if sent["request"]["method"].upper() not in ("GET", "HEAD"):
            got.pop("resource", None)


def _entry_getter(api: FhirApi, base: str, strict: bool, restrict: Restriction | None
                  ) -> Callable[[str, str], dict[str, Any]]:
    """GET entries of a batch/transaction: read, vread or search, as a response entry (as
    the caller may see them)."""

    def get(path: str, query: str) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        rtype = api.served(parts[0])
        if len(parts) == 1:  # each search of a batch has a budget of its own
            search = functools.partial(searcher(api.store, restrict),
                                       budget=Budget(api.budgets.seconds))
            bundle = search_bundle(search, rtype, parse_qsl(query), base, strict=strict)
            return {"resource": bundle, "response": {"status": "200 OK"}}
        version = parts[3] if len(parts) == 4 and parts[2] == "_history" else None
        resource = ix.read(api.store, rtype, parts[1], version, restrict)
        return response_entry(ix.Result(200, resource, "read"), base)

    return get


# -- type level --------------------------------------------------------------------------------

def _type_routes(router: APIRouter, api: FhirApi) -> None:
    @router.get("/{rtype}")
    async def search(rtype: str, request: Request) -> Response:
        api.served(rtype)
        return await _search(api, request, rtype, list(request.query_params.multi_items()))

    @router.post("/{rtype}/_search")
    async def search_post(rtype: str, request: Request) -> Response:
        api.served(rtype)
        check_body_type(request, form=True)
        form = await request.form()
        params = [*request.query_params.multi_items(),
                  *((k, v) for k, v in form.multi_items() if isinstance(v, str))]
        return await _search(api, request, rtype, params)

    @router.post("/{rtype}")
    async def create(rtype: str, request: Request) -> Response:
        api.writable(rtype)
        resource = await read_json(request)
        ix.check_identity(resource, rtype, None)
        if_none_exist = request.headers.get("if-none-exist")
        result = await _write(api, lambda tx: ix.create(
            tx, resource, api.context(request), if_none_exist=if_none_exist))
        return _write_answer(api, request, result)

    @router.put("/{rtype}")
    async def conditional_update(rtype: str, request: Request) -> Response:
        api.writable(rtype)
        resource = await read_json(request)
        query, if_match = _query(request), ix.parse_if_match(request.headers.get("if-match"))
        result = await _write(api, lambda tx: ix.conditional_update(
            tx, rtype, query, resource, api.context(request), if_match=if_match))
        return _write_answer(api, request, result)

    @router.delete("/{rtype}")
    async def conditional_delete(rtype: str, request: Request) -> Response:
        api.writable(rtype)
        query = _query(request)
        result = await _write(api, lambda tx: ix.conditional_delete(
            tx, rtype, query, api.context(request)))
        return _write_answer(api, request, result)



def _query(request: Request) -> str:
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k != "_format"]
    if not pairs:
        raise FhirError.of("not-supported", f"{request.method} on a resource type needs "
                           "search criteria (conditional interaction)", status=405)
    return urlencode(pairs)


async def _search(api: FhirApi, request: Request, rtype: str,
                  params: list[tuple[str, str]]) -> Response:
    if rtype == "SearchParameter":
        return fhir_response(api.capability.search_parameters_bundle(api.base(request)))
    base, strict, restrict = api.base(request), prefer(request).strict, restricted(request)
    bundle = await api.budgets.run(request, lambda budget: search_bundle(
        functools.partial(searcher(api.store, restrict), budget=budget), rtype, params, base,
        strict=strict))
    return fhir_response(bundle)


async def _write(api: FhirApi, work: Callable[[Any], ix.Result]) -> ix.Result:
    def run() -> ix.Result:
        retrying = getattr(api.store, "retrying", None)
        if retrying is not None:
            result: ix.Result = retrying(work)
            return result
        with api.store.transaction() as tx:
            return work(tx)

    return await call(run)


def _write_answer(api: FhirApi, request: Request, result: ix.Result) -> Response:
    headers: dict[str, str] = {}
    if result.resource is not None:
        headers = version_headers(result.resource)
    if result.location and result.status == 201:
        headers["Location"] = f"{api.base(request)}/{result.location}"
    if result.resource is None:  # deletes
        if prefer(request).return_ == "minimal":
            return Response(b"", status_code=204)
        return fhir_response(information(result.message), 200)
    return write_response(request, result.resource, result.status, headers, result.message)


# -- instance level ----------------------------------------------------------------------------

def _instance_routes(router: APIRouter, api: FhirApi) -> None:
    @router.get("/{rtype}/{id}/_history/{vid}")
    async def vread(rtype: str, id: str, vid: str, request: Request) -> Response:
        api.served(rtype)
        resource = await call(ix.read, api.store, rtype, id, vid, restricted(request))
        return _resource_answer(request, resource)

    @router.get("/{rtype}/{id}/_history")
    async def instance_history(rtype: str, id: str, request: Request) -> Response:
        return await _history(api, request, api.served(rtype), id)

    @router.put("/{rtype}/{id}")
    async def update(rtype: str, id: str, request: Request) -> Response:
        api.writable(rtype)
        resource = await read_json(request)
        if_match = ix.parse_if_match(request.headers.get("if-match"))
        result = await _write(api, lambda tx: ix.update(
            tx, rtype, id, resource, api.context(request), if_match=if_match))
        return _write_answer(api, request, result)

    @router.delete("/{rtype}/{id}")
    async def delete(rtype: str, id: str, request: Request) -> Response:
        api.writable(rtype)
        result = await _write(api, lambda tx: ix.delete(tx, rtype, id, api.context(request)))
        return _write_answer(api, request, result)


def _resource_answer(request: Request, resource: Resource) -> Response:
    headers = version_headers(resource)
    meta = resource.get("meta") or {}
    if not_modified(request, str(meta.get("versionId", "")), str(meta.get("lastUpdated", ""))):
        return Response(b"", status_code=304, headers=headers)
    content = orjson.dumps(resource)
    if request.scope["query_string"]:
        content = _shaped(content, request)
    return fhir_response(content, 200, headers)


async def _history(api: FhirApi, request: Request, rtype: str | None, id: str | None
                   ) -> Response:
    params = request.query_params
    count = _count(params.get("_count"))
    since, before = _since(params.get("_since")), _since(params.get("_before"), "_before")
    versions, next_before = await call(history_page, api.store, rtype, id, since=since,
                                       before=before, count=count,
                                       restrict=restricted(request))
    if id is not None and not versions and before is None:
        raise FhirError.of("not-found", f"{rtype}/{id} is not known")
    bundle = history_bundle(versions, api.base(request), api.url(request))
    if next_before is not None:
        query = [(k, v) for k, v in params.multi_items() if k != "_before"]
        url = api.url(request, urlencode([*query, ("_before", next_before)]))
        bundle["link"].append({"relation": "next", "url": url})
        del bundle["total"]  # the size of this page is not the total
    return fhir_response(bundle)


def _since(value: str | None, name: str = "_since") -> str | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FhirError.of("invalid", f"{name} must be a FHIR instant such as "
                           "2026-01-01T00:00:00Z", expression=[name]) from exc
    if moment.tzinfo is None:
        raise FhirError.of("invalid", f"{name} needs a time zone", expression=[name])
    return value


def _count(value: str | None) -> int:
    if value is None:
        return 50
    if not value.isdigit():
        raise FhirError.of("invalid", "_count must be a non-negative integer",
                           expression=["_count"])
    return min(int(value), MAX_HISTORY)

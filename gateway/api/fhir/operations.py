"""``Patient/{id}/$everything`` and ``Observation/$lastn``.

``$everything``: the Patient and every resource of its compartment (Observation, Specimen,
ResearchSubject, Provenance, Group: the types this server holds with a patient reference)
that the caller may read, as a searchset Bundle paged with ``_count`` (default 100, at most
1000) and a ``next`` link; ``_type`` narrows the types, ``_since`` the modification time.

``$lastn``: per Observation code (the first coding's ``system|code``, else its text), the
``max`` (default 1) most recent Observations by ``effective`` date, for one ``patient`` or
``subject`` (required: the operation answers for one person at a time), with any other
Observation search parameter (``code``, ``category``, ``date``...) narrowing it.

Like the other FHIR routes these need ``r`` on the types read, and a study- or
site-restricted caller sees only what the per-study rule lets through (docs/security.md):
a Patient outside it is 404, and only the visible part of a compartment is returned.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.errors import Gone
from gateway.security.access import Restriction, restriction_of
from gateway.security.principal import Principal, principal_of
from gateway.store import (
    COMPARTMENT,
    Resource,
    Scope,
    SqlStore,
    compartment_page,
    recorded_restriction,
)

from .interactions import new_id
from .negotiation import check_format, fhir_response
from .outcomes import FhirError
from .routes import _since, call

EVERYTHING_TYPES = ("Patient", *sorted(COMPARTMENT))
# what ``operations_router`` serves, for the CapabilityStatement (``fhir_router``)
CAPABILITY_OPERATIONS = {
    "Patient": [{"name": "everything",
                 "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}],
    "Observation": [{"name": "lastn",
                     "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn"}],
}
LASTN_PAGE = 500


def capability_operations() -> dict[str, list[dict[str, str]]]:
    """The operations of ``export_router`` and ``operations_router`` by resource type (""
    for the system level), as ``fhir_router`` publishes them."""
    from .export import CAPABILITY_OPERATIONS as EXPORT

    return {rtype: [*EXPORT.get(rtype, []), *CAPABILITY_OPERATIONS.get(rtype, [])]
            for rtype in sorted({*EXPORT, *CAPABILITY_OPERATIONS})}


def operations_router(store: SqlStore, base_url: Callable[[], str] | None = None
                      ) -> APIRouter:
    """Include before the generic FHIR router (``/fhir/{type}/{id}`` would take
    ``/fhir/Observation/$lastn``). ``base_url``: the public ``/fhir`` base for ``fullUrl``
    (the gateway's ``--public-url``); without it, the request's own base."""
    router = APIRouter(prefix="/fhir", tags=["operations"])

    def base(request: Request) -> str:
        return base_url() if base_url else f"{str(request.base_url).rstrip('/')}/fhir"

    @router.get("/Patient/{id}/$everything")
    async def everything(id: str, request: Request) -> Response:
        check_format(request)
        principal = _reader(request, "Patient")
        params = request.query_params
        types = _types(params.get("_type"), principal)
        count = _count(params.get("_count"), 100, 1000)
        after = _cursor(params.get("_cursor"))
        scope = Scope(since=_since(params.get("_since")), patients=[id], compartment=True)
        await call(_patient_exists, store, id, restriction_of(principal))
        recorded = {"studies": principal.studies, "sites": principal.sites,
                    "anonymous": principal.anonymous}
        rows, following = await run_in_threadpool(
            compartment_page, store, types, scope, after=after, count=count,
            restriction=lambda rtype: recorded_restriction(recorded, rtype))
        request.state.audit = {"subtype": "everything", "entity": [f"Patient/{id}"],
                               "query": request.url.query}
        return fhir_response(_bundle(request, base(request), rows, following))

    @router.get("/Observation/$lastn")
    async def lastn(request: Request) -> Response:
        check_format(request)
        restrict = restriction_of(_reader(request, "Observation"))
        pairs = list(request.query_params.multi_items())
        top = _count(request.query_params.get("max"), 1, 1000, name="max")
        criteria = [(k, v) for k, v in pairs if k not in ("max", "_format", "_count")]
        if not any(k.split(":")[0] in ("patient", "subject") for k, _ in criteria):
            raise FhirError.of("invalid", "$lastn needs a patient or subject parameter",
                               expression=["patient"])
        found = await call(_latest, store, criteria, top, restrict)
        request.state.audit = {"subtype": "lastn", "entity": [], "query": request.url.query}
        return fhir_response(_searchset(request, base(request), found))

    return router


def _reader(request: Request, rtype: str) -> Principal:
    principal = principal_of(request)
    if not principal.may(rtype, "r"):
        raise FhirError.of("forbidden", f"this client may not read {rtype}", status=403)
    return principal


def _types(given: str | None, principal: Principal) -> list[str]:
    types = list(EVERYTHING_TYPES)
    if given:
        types = [t.strip() for t in given.split(",") if t.strip()]
        unknown = [t for t in types if t not in EVERYTHING_TYPES]
        if unknown:
            raise FhirError.of("invalid", f"_type {unknown[0]!r} is not in the Patient "
                               f"compartment here; known: {', '.join(EVERYTHING_TYPES)}",
                               expression=["_type"])
    return [t for t in types if principal.may(t, "r")]


def _count(value: str | None, default: int, most: int, *, name: str = "_count") -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise FhirError.of("invalid", f"{name} must be a positive integer",
                           expression=[name])
    return min(int(value), most)


def _cursor(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    try:
        index, last = orjson.loads(base64.urlsafe_b64decode(value.encode()))
        return int(index), str(last)
    except (ValueError, TypeError) as exc:
        raise FhirError.of("invalid", "_cursor is not one this server made",
                           expression=["_cursor"]) from exc


def _patient_exists(store: SqlStore, id: str, restrict: Restriction | None) -> None:
    try:
        found = store.read("Patient", id, restrict=restrict)
    except Gone:
        found = None
    if found is None:
        raise FhirError.of("not-found", f"Patient/{id} is not known")


def _bundle(request: Request, base: str, rows: list[tuple[str, bytes]],
            following: tuple[int, str] | None) -> dict[str, Any]:
    resources = [orjson.loads(content) for _, content in rows]
    bundle = _searchset(request, base, resources)
    if following is not None:
        token = base64.urlsafe_b64encode(orjson.dumps(list(following))).decode()
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
        bundle["link"].append({"relation": "next",
                               "url": public_url(request, base, [*query, ("_cursor", token)])})
    return bundle


def _searchset(request: Request, base: str, resources: list[Resource]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": new_id(), "type": "searchset",
            "link": [{"relation": "self", "url": public_url(
                request, base, list(request.query_params.multi_items()))}],
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


def public_url(request: Request, base: str, query: list[tuple[str, str]]) -> str:
    """This request's URL on the public base (never built from the request's Host)."""
    path = request.url.path.removeprefix("/fhir")
    return f"{base}{path}?{urlencode(query)}" if query else f"{base}{path}"


def _latest(store: SqlStore, criteria: list[tuple[str, str]], top: int,
            restrict: Restriction | None = None) -> list[Resource]:
    """Newest first by date (the store's ``_sort=-date``), keeping ``top`` per code."""
    kept: dict[str, list[Resource]] = {}
    cursor: str | None = None
    while True:
        page = [*criteria, ("_sort", "-date"), ("_count", str(LASTN_PAGE)),
                *([("_cursor", cursor)] if cursor else [])]
        result = store.search("Observation", page, strict=True, restrict=restrict)
        for observation in result.resources:
            same = kept.setdefault(_code_key(observation), [])
            if len(same) < top:
                same.append(observation)
        cursor = result.next_cursor
        if not cursor or not result.resources:
            return [o for code in sorted(kept) for o in kept[code]]


def _code_key(observation: Resource) -> str:
    code = observation.get("code") or {}
    for coding in code.get("coding") or []:
        if coding.get("code"):
            return f"{coding.get('system', '')}|{coding['code']}"
    return str(code.get("text", ""))

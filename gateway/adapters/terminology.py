"""``/fhir/ConceptMap`` (one per site code map, with ``$translate``) and ``/fhir/CodeSystem``
(the network CodeSystem ``cgt-lab``), read-only, computed from the site files so that a
SIGHUP reload is visible at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from gateway.adapters.conceptmap import network_codesystem, site_concept_map, translate
from gateway.adapters.loader import Network
from gateway.fhir import FHIR_MEDIA_TYPE

Resource = dict[str, Any]


def _fhir(body: Resource, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_MEDIA_TYPE)


def _not_found(what: str) -> JSONResponse:
    return _fhir({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-found", "diagnostics": f"{what} is not known"}]}, 404)


def _bundle(resources: list[Resource], base: str) -> Resource:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


async def _params(request: Request) -> dict[str, str]:
    params = dict(request.query_params)
    if request.method == "POST":
        body = await request.json()
        for p in body.get("parameter", []):
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if isinstance(value, dict) and p["name"] == "coding":
                params.setdefault("system", value.get("system", ""))
                params.setdefault("code", value.get("code", ""))
            elif value is not None:
                params.setdefault(p["name"], str(value))
    return params


def terminology_router(network: Network,
                       base_url: Callable[[], str] | None = None) -> APIRouter:
    """``base_url``: the public FHIR base for ``fullUrl`` (``gateway serve``: from
    ``--public-url``); without it, the request's own."""

    def base(request: Request) -> str:
        return base_url() if base_url else str(request.base_url).rstrip("/") + "/fhir"

    router = APIRouter(prefix="/fhir", tags=["terminology"])

    def maps(url: str | None = None) -> list[Resource]:
        out = [site_concept_map(s) for s in network.sites.values()]
        return [m for m in out if url is None or m["url"] == url]

    async def do_translate(request: Request, only: list[Resource]) -> JSONResponse:
        params = await _params(request)
        if not params.get("code"):
            return _fhir({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "required",
                 "diagnostics": "$translate needs code (and system) or coding"}]}, 400)
        return _fhir(translate(only, params["code"], params.get("system") or None,
                               params.get("target") or params.get("targetsystem") or None))

    # one operation per method: /openapi.json (now served, behind authentication) refuses
    # a GET and a POST that share an operation id
    @router.get("/ConceptMap/$translate", operation_id="ConceptMap_translate_get")
    @router.post("/ConceptMap/$translate", operation_id="ConceptMap_translate_post")
    async def translate_any(request: Request) -> JSONResponse:
        return await do_translate(request, maps(request.query_params.get("url")))

    @router.get("/ConceptMap/{id}/$translate", operation_id="ConceptMap_id_translate_get")
    @router.post("/ConceptMap/{id}/$translate", operation_id="ConceptMap_id_translate_post")
    async def translate_one(id: str, request: Request) -> JSONResponse:
        only = [m for m in maps() if m["id"] == id]
        return await do_translate(request, only) if only else _not_found(f"ConceptMap/{id}")

    @router.get("/ConceptMap")
    async def search_maps(request: Request, url: str | None = None) -> JSONResponse:
        return _fhir(_bundle(maps(url), base(request)))

    @router.get("/ConceptMap/{id}")
    async def read_map(id: str) -> JSONResponse:
        found = [m for m in maps() if m["id"] == id]
        return _fhir(found[0]) if found else _not_found(f"ConceptMap/{id}")

    @router.get("/CodeSystem")
    async def search_codesystems(request: Request) -> JSONResponse:
        return _fhir(_bundle([network_codesystem()], base(request)))

    @router.get("/CodeSystem/{id}")
    async def read_codesystem(id: str) -> JSONResponse:
        cs = network_codesystem()
        return _fhir(cs) if id == cs["id"] else _not_found(f"CodeSystem/{id}")

    return router


def capability_entries() -> list[Resource]:
    """CapabilityStatement.rest.resource entries for what this router serves under /fhir."""
    read_search = [{"code": "read"}, {"code": "search-type"}]
    return [
        {"type": "CodeSystem", "interaction": read_search},
        {"type": "ConceptMap", "interaction": read_search,
         "searchParam": [{"name": "url", "type": "uri"}],
         "operation": [{"name": "translate", "definition":
                        "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate"}]},
    ]

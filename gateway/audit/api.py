"""``/fhir/AuditEvent``: the audit trail, read-only, for a caller with the audit scope.

``GET /fhir/AuditEvent`` searches (``date`` with prefixes eq ge gt le lt sa eb, ``agent``
(client id), ``entity`` (``Type/id``), ``type``, ``subtype``, ``outcome``, ``action``;
comma = OR, repeated parameter = AND; ``_count`` ≤ 1000, ``_sort=-date`` (default, newest
first) or ``date``; ``next`` links carry a keyset ``_cursor``). ``GET /fhir/AuditEvent/{id}``
reads one event. POST, PUT, PATCH and DELETE answer 405: the trail is written by the
gateway alone. Served on every role (an edge keeps its own trail).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.api.fhir.outcomes import issue, outcome
from gateway.fhir import FHIR_MEDIA_TYPE
from gateway.security.principal import AUDIT, principal_of
from gateway.store.audit import AuditLog, AuditQuery
from gateway.store.search.values import date_range, split_or

MAX_COUNT = 1000
DEFAULT_COUNT = 50
LISTS = {"agent": "agents", "entity": "entities", "type": "types", "subtype": "subtypes",
         "outcome": "outcomes", "action": "actions"}
IGNORED = frozenset({"_format", "_pretty"})
ENTRY: dict[str, Any] = {
    "type": "AuditEvent", "interaction": [{"code": "read"}, {"code": "search-type"}],
    "searchParam": [{"name": "date", "type": "date"}, {"name": "agent", "type": "token"},
                    {"name": "entity", "type": "reference"}, {"name": "type", "type": "token"},
                    {"name": "subtype", "type": "token"}, {"name": "outcome", "type": "token"},
                    {"name": "action", "type": "token"}]}


class Refused(Exception):
    def __init__(self, status: int, code: str, diagnostics: str, where: str | None = None):
        super().__init__(diagnostics)
        self.status, self.code, self.where = status, code, where


def _answer(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_MEDIA_TYPE,
                    headers={"Cache-Control": "no-store"})


def _refused(exc: Refused) -> Response:
    found = issue(exc.code, str(exc), expression=[exc.where] if exc.where else None)
    return _answer(outcome(found), exc.status)


def _date(value: str) -> tuple[int | None, int | None]:
    prefix, text = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    try:
        low, high = date_range(text)
    except ValueError:
        raise Refused(400, "invalid", f"date {value!r} is not a FHIR date", "date") from None
    ranges = {"eq": (low, high), "ge": (low, None), "gt": (high, None), "sa": (high, None),
              "le": (None, high), "lt": (None, low), "eb": (None, low)}
    if prefix not in ranges:
        raise Refused(400, "not-supported", f"date prefix {prefix!r} is not supported here "
                      "(eq ge gt le lt sa eb)", "date")
    return ranges[prefix]


def _entity(value: str) -> str:
    """A reference as given (``Patient/1``) or absolute (``…/fhir/Patient/1``)."""
    parts = value.rstrip("/").split("/")
    return "/".join(parts[-2:]) if "://" in value else value


def parse_query(pairs: list[tuple[str, str]]) -> AuditQuery:
    q = AuditQuery()
    for name, value in pairs:
        if name in LISTS:
            values = [v for v in split_or(value) if v]
            if name == "entity":
                values = [_entity(v) for v in values]
            if values:
                getattr(q, LISTS[name]).append(values)
        elif name == "date":
            q.ranges.append(_date(value))
        elif name == "_count":
            if not value.isdigit():
                raise Refused(400, "invalid", "_count must be a whole number", "_count")
            q.count = min(int(value), MAX_COUNT)
        elif name == "_sort":
            if value not in ("date", "-date"):
                raise Refused(400, "not-supported", "_sort takes date or -date", "_sort")
            q.newest_first = value == "-date"
        elif name == "_cursor":
            if not value.isdigit():
                raise Refused(400, "invalid", "_cursor is not one this server issued")
            q.after = int(value)
        elif name not in IGNORED:
            raise Refused(400, "not-supported", f"unknown search parameter {name!r} for "
                          "AuditEvent (date agent entity type subtype outcome action _count "
                          "_sort)", name)
    return q


def _bundle(base: str, pairs: list[tuple[str, str]], rows: list[tuple[int, bytes]],
            more: bool) -> dict[str, Any]:
    kept = [(k, v) for k, v in pairs if k != "_cursor"]
    link = [{"relation": "self", "url": f"{base}/AuditEvent?{urlencode(pairs)}"}]
    if more and rows:
        after = urlencode([*kept, ("_cursor", str(rows[-1][0]))])
        link.append({"relation": "next", "url": f"{base}/AuditEvent?{after}"})
    return {"resourceType": "Bundle", "type": "searchset", "link": link,
            "entry": [{"fullUrl": f"{base}/AuditEvent/{seq}", "resource": orjson.Fragment(c),
                       "search": {"mode": "match"}} for seq, c in rows]}


def _check(request: Request) -> None:
    if not principal_of(request).has(AUDIT):
        raise Refused(403, "forbidden", f"reading the audit trail needs the scope {AUDIT}")


async def _pairs(request: Request) -> list[tuple[str, str]]:
    pairs = parse_qsl(request.scope["query_string"].decode("latin-1"),
                      keep_blank_values=True)
    if request.method == "POST":
        pairs += parse_qsl((await request.body()).decode("utf-8", "replace"),
                           keep_blank_values=True)
    return pairs


def audit_router(log: AuditLog) -> APIRouter:
    """One route for the whole of ``/fhir/AuditEvent`` (every request that comes before
    it in the routing table tries it: one pattern costs less than five)."""
    router = APIRouter(tags=["audit"])

    async def search(request: Request) -> Response:
        pairs = await _pairs(request)
        rows, more = await run_in_threadpool(log.search, parse_query(pairs))
        base = f"{str(request.base_url).rstrip('/')}/fhir"
        return _answer(_bundle(base, pairs, rows, more))

    async def read(id: str) -> Response:
        content = (await run_in_threadpool(log.read, int(id))) if id.isdigit() else None
        if content is None:
            raise Refused(404, "not-found", f"AuditEvent/{id} is not known")
        return Response(content, media_type=FHIR_MEDIA_TYPE,
                        headers={"Cache-Control": "no-store"})

    async def audit_event(rest: str, request: Request) -> Response:
        try:
            if request.method not in ("GET", "POST") or (
                    request.method == "POST" and rest != "/_search"):
                raise Refused(405, "not-supported", "the audit trail is read-only: "
                              "AuditEvents are written by the gateway alone")
            _check(request)
            if rest in ("", "/", "/_search"):
                return await search(request)
            if rest.count("/") != 1:
                raise Refused(404, "not-found", f"no interaction at AuditEvent{rest}")
            return await read(rest[1:])
        except Refused as exc:
            answer = _refused(exc)
            if exc.status == 405:
                answer.headers["Allow"] = "GET"
            return answer

    # one operation id per method: /openapi.json refuses methods that share one
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        router.add_api_route(
            "/fhir/AuditEvent{rest:path}", audit_event, methods=[method],
            operation_id=f"AuditEvent_{method.lower()}",
            summary="Search (GET, POST /_search) and read the audit trail (audit scope); "
                    "not writable")
    return router

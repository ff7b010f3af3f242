"""``/fhir/Subscription``: create, read, update, delete and search R4 Subscriptions.

The middleware admits a request with the SMART scope of its interaction on Subscription
(``system/Subscription.c|r|u|d|s``, as every type). Here, on top of it:

* a subscription belongs to the client that created it: any other client gets 404 on it
  and does not find it by search (its ``channel.header`` may hold the receiver's secret);
* the criteria's type must be searchable by the client (``s`` on it) and, for a client
  restricted to studies or sites, a type it can see; its parameters are checked by the
  store's search planner (400 naming ``Subscription.criteria`` otherwise);
* the owner's restriction is recorded with the subscription (as an export job records its
  principal) and applies to every notification;
* a change of criteria drops the notifications still pending under the old ones;
* ``status``: a client asks ``requested`` (or ``active``, read as ``requested`` unless it is
  active already with the same channel and criteria) or ``off``; ``error`` is the gateway's.

This router comes before the generic FHIR router (whose ``/fhir/{type}/{id}`` would take
these paths and answer 404 for a type it does not serve).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.api.fhir.negotiation import check_format, fhir_response, read_json
from gateway.api.fhir.outcomes import FhirError
from gateway.api.fhir.validation import validate_resource
from gateway.errors import SearchError
from gateway.security.access import restriction_of
from gateway.security.principal import Principal, principal_of
from gateway.store.search.params import RESOURCE_TYPES
from gateway.store.search.plan import make_plan
from gateway.store.sql import SqlStore
from gateway.store.subscriptions import (
    SubscriptionRow,
    delete_subscription,
    get_subscription,
    insert_subscription,
    list_subscriptions,
    replace_subscription,
)
from gateway.subscriptions.resource import (
    Spec,
    SubscriptionError,
    parse,
    scrub_reason,
)
from gateway.subscriptions.service import DeliveryOptions, SubscriptionService

SEARCH_PARAMS = {"_id", "status", "type", "url", "criteria", "payload"}
IGNORED = {"_format", "_pretty", "_count"}
CAPABILITY_ENTRY: dict[str, Any] = {
    "type": "Subscription",
    "interaction": [{"code": c} for c in ("read", "vread", "create", "update", "delete",
                                          "search-type")],
    "searchParam": [{"name": "_id", "type": "token"}, {"name": "status", "type": "token"},
                    {"name": "type", "type": "token"}, {"name": "url", "type": "uri"},
                    {"name": "criteria", "type": "string"},
                    {"name": "payload", "type": "token"}],
    "documentation": "R4 Subscriptions, channel rest-hook (docs/research-data.md)"}


def subscription_router(store: SqlStore, service: SubscriptionService | None,
                        base_url: Callable[[], str] | None = None) -> APIRouter:
    router = APIRouter(prefix="/fhir/Subscription", tags=["subscriptions"])
    options = service.options if service is not None else DeliveryOptions()

    def base(request: Request) -> str:
        return base_url() if base_url else f"{str(request.base_url).rstrip('/')}/fhir"

    def touch(id: str) -> None:
        if service is not None:
            service.touch(id)

    @router.post("")
    async def create(request: Request) -> Response:
        check_format(request)
        principal = principal_of(request)
        body = await read_json(request)
        spec = _checked(body, principal, options)
        row = SubscriptionRow(id=str(uuid.uuid4()), res_type=spec.resource_type,
                              status=spec.status, client_id=principal.client_id,
                              principal=_recorded(principal), content=scrub_reason(body))
        await run_in_threadpool(_check_criteria, spec, principal)
        await run_in_threadpool(insert_subscription, store, row)
        touch(row.id)
        request.state.audit = {"entity": [f"Subscription/{row.id}"]}
        location = f"{base(request)}/Subscription/{row.id}/_history/{row.version_id}"
        return fhir_response(represent(row), 201, {"Location": location,
                                                   "ETag": f'W/"{row.version_id}"'})

    @router.get("")
    async def search(request: Request) -> Response:
        check_format(request)
        pairs = _search_params(request.query_params.multi_items())
        rows = await run_in_threadpool(list_subscriptions, store,
                                       client_id=principal_of(request).client_id)
        found = [r for r in rows if _matches(r, pairs)]
        return fhir_response(_bundle(found, base(request), str(request.url)))

    @router.get("/{id}")
    async def read(id: str, request: Request) -> Response:
        check_format(request)
        row = await _own(store, id, principal_of(request))
        return fhir_response(represent(row), 200, {"ETag": f'W/"{row.version_id}"'})

    @router.get("/{id}/_history/{vid}")
    async def vread(id: str, vid: str, request: Request) -> Response:
        """The version a create names in its ``Location``: the current one only (a
        Subscription keeps no history)."""
        check_format(request)
        row = await _own(store, id, principal_of(request))
        if vid != str(row.version_id):
            raise FhirError.of("not-found", f"Subscription/{id}/_history/{vid} is not kept: "
                               f"the current version is {row.version_id}")
        return fhir_response(represent(row), 200, {"ETag": f'W/"{row.version_id}"'})

    @router.put("/{id}")
    async def update(id: str, request: Request) -> Response:
        check_format(request)
        principal = principal_of(request)
        body = await read_json(request)
        if body.get("id") not in (None, id):
            raise FhirError.of("invalid", f"the body's id {body.get('id')!r} is not {id!r}",
                               expression=["Subscription.id"])
        row = await _own(store, id, principal)
        spec = _checked(body, principal, options)
        await run_in_threadpool(_check_criteria, spec, principal)
        expected, criteria = row.version_id, row.content.get("criteria")
        _apply(row, spec, scrub_reason(body), principal)
        if not await run_in_threadpool(partial(
                replace_subscription, store, row, expected_version=expected,
                drop_pending=criteria != row.content.get("criteria"))):
            raise FhirError.of("conflict", f"Subscription/{id} changed meanwhile; read it "
                               "and try again", status=409)
        touch(id)
        return fhir_response(represent(row), 200, {"ETag": f'W/"{row.version_id}"'})

    @router.delete("/{id}")
    async def remove(id: str, request: Request) -> Response:
        await _own(store, id, principal_of(request))
        await run_in_threadpool(delete_subscription, store, id)
        touch(id)
        return Response(status_code=204)

    return router


def represent(row: SubscriptionRow) -> dict[str, Any]:
    """The Subscription as served: what the client sent, with the gateway's state."""
    out = {**row.content, "resourceType": "Subscription", "id": row.id,
           "meta": {"versionId": str(row.version_id), "lastUpdated": row.last_updated},
           "status": row.status}
    if row.error:
        out["error"] = row.error
    return out


def _checked(body: dict[str, Any], principal: Principal, options: DeliveryOptions) -> Spec:
    if body.get("resourceType") != "Subscription":
        raise FhirError.of("invalid", "the body must be a Subscription",
                           expression=["resourceType"])
    try:
        spec = parse(body, allowed_hosts=options.allowed_hosts)
    except SubscriptionError as exc:  # before the schema: these name the element at fault
        raise FhirError.of("invalid", str(exc), status=400, expression=[exc.element]) from exc
    validate_resource(body)
    if spec.resource_type not in RESOURCE_TYPES:
        raise FhirError.of("invalid", f"criteria: resource type {spec.resource_type} is not "
                           "searchable on this server", status=400,
                           expression=["Subscription.criteria"])
    if not principal.may(spec.resource_type, "s"):
        raise FhirError.of("forbidden", f"this client may not search {spec.resource_type}: "
                           "it cannot subscribe to it", status=403,
                           expression=["Subscription.criteria"])
    restriction = restriction_of(principal)
    if restriction is not None and not restriction.may_see_type(spec.resource_type):
        raise FhirError.of("forbidden", f"this client sees no {spec.resource_type}: it "
                           "cannot subscribe to it", status=403,
                           expression=["Subscription.criteria"])
    return spec


def _check_criteria(spec: Spec, principal: Principal) -> None:
    """The store's search planner decides (no query runs)."""
    try:
        make_plan(spec.resource_type, list(spec.criteria), strict=True,
                  restrict=restriction_of(principal))
    except SearchError as exc:
        why = "; ".join(str(i.get("diagnostics")) for i in exc.issues)
        raise FhirError.of("invalid", f"criteria: {why}", status=400,
                           expression=["Subscription.criteria"]) from exc


def _recorded(principal: Principal) -> dict[str, Any]:
    """What notifications need of the owner (as ``gateway.export`` records a principal)."""
    return {"client_id": principal.client_id, "anonymous": principal.anonymous,
            "studies": None if principal.studies is None else sorted(principal.studies),
            "sites": None if principal.sites is None else sorted(principal.sites)}


def _apply(row: SubscriptionRow, spec: Spec, content: dict[str, Any],
           principal: Principal) -> None:
    """An update by its owner: the new content; a live subscription whose channel and
    criteria are unchanged stays as it is, any other is asked again (handshake)."""
    same = (row.content.get("channel") == content.get("channel")
            and row.content.get("criteria") == content.get("criteria"))
    keep = spec.status == "requested" and row.status == "active" and same
    row.status = "active" if keep else spec.status
    row.res_type, row.content = spec.resource_type, content
    row.principal = _recorded(principal)
    if not keep:  # resumed, re-pointed or turned off: counters start again
        row.failures, row.next_attempt_ms, row.error = 0, 0, None


async def _own(store: SqlStore, id: str, principal: Principal) -> SubscriptionRow:
    row = await run_in_threadpool(get_subscription, store, id)
    if row is None or (row.client_id != principal.client_id and not principal.anonymous):
        raise FhirError.of("not-found", f"Subscription/{id} is not known", status=404)
    return row


def _search_params(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    for name, _ in items:
        if name not in SEARCH_PARAMS and name not in IGNORED:
            raise FhirError.of("invalid", f"unknown search parameter {name!r} for "
                               f"Subscription ({', '.join(sorted(SEARCH_PARAMS))})",
                               status=400, expression=[name])
    return [(name, value) for name, value in items if name in SEARCH_PARAMS]


def _matches(row: SubscriptionRow, pairs: list[tuple[str, str]]) -> bool:
    channel = row.content.get("channel") or {}
    values = {"_id": row.id, "status": row.status, "type": channel.get("type"),
              "url": channel.get("endpoint"), "criteria": row.content.get("criteria"),
              "payload": channel.get("payload")}
    for name, value in pairs:
        if values[name] not in value.split(","):
            return False
    return True


def _bundle(rows: list[SubscriptionRow], base: str, self_url: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(rows),
            "link": [{"relation": "self", "url": self_url}],
            "entry": [{"fullUrl": f"{base}/Subscription/{r.id}", "resource": represent(r),
                       "search": {"mode": "match"}} for r in rows]}

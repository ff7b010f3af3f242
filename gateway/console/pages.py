"""The console's pages: ``/console`` (network), ``/console/messages`` (browser, one message,
its raw text, replay), ``/console/unmapped``, ``/console/studies``, ``/console/exports``,
``/console/bus``. Each route checks the page's need (``Console.guard``), gathers its data
in a worker thread (``gateway.console.data``) and renders a template."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.admin import decode_cursor, encode_cursor
from gateway.console import data
from gateway.console.web import Console, Need, current_alerts
from gateway.hl7.mask import decode, readable
from gateway.security.access import restriction_of
from gateway.security.principal import ADMIN, RAW, Principal
from gateway.store import InboxFilter, normalise_instant
from gateway.store import console_queries as queries

STATUSES = ("processed", "error", "rejected", "received")
PAGE = 50
STUDIES_SECONDS = 30.0


def scope(name: str) -> Need:
    return lambda p: None if p.has(name) else f"this page needs the scope {name}"


def _studies_need(principal: Principal) -> str | None:
    if principal.may("ResearchStudy", "s") and principal.may("ResearchSubject", "s"):
        return None
    return ("this page needs search on ResearchStudy and ResearchSubject "
            "(e.g. system/ResearchStudy.rs system/ResearchSubject.rs)")


def pages_router(console: Console) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    store, network = console.store, console.network

    @router.get("")
    async def network_page(request: Request) -> Response:
        got = console.guard(request, scope(ADMIN))
        if isinstance(got, Response):
            return got
        session, fresh, principal = got
        # with the alert rules running, they decide (working hours included); without
        # them the tiles flag a site silent beyond its expectation themselves
        rules = getattr(request.app.state, "alerts", None) is not None
        alerted = {a.site for a in current_alerts(request) if getattr(a, "site", None)}
        tiles = await asyncio.to_thread(data.network_tiles, store, network,
                                        principal, console.now(), alerted,
                                        own_silence=not rules)
        return console.render(request, session, fresh, "network.html", page="network",
                              tiles=tiles)

    @router.get("/messages")
    async def messages_page(request: Request, site: str | None = None,
                            status: str | None = None, type: str | None = None,
                            control_id: str | None = None, since: str | None = None,
                            until: str | None = None, cursor: str | None = None,
                            limit: int = PAGE) -> Response:
        got = console.guard(request, scope(ADMIN))
        if isinstance(got, Response):
            return got
        session, fresh, principal = got
        filters = {"site": site or None, "status": status or None, "type": type or None,
                   "control_id": control_id or None, "since": since or None,
                   "until": until or None}
        problem = _filter_problem(filters)
        rows: list[Any] = []
        next_cursor = None
        limit = max(1, min(limit, 500))
        if problem is None:
            where = InboxFilter(filters["status"], filters["site"], filters["type"],
                                filters["control_id"], filters["since"], filters["until"])
            try:
                before = decode_cursor(cursor) if cursor else None
            except Exception:  # noqa: BLE001 - HTTPException from the admin API's decoder
                before, problem = None, "cursor: not a cursor of this list"
            rows = await asyncio.to_thread(queries.messages_page, store, where,
                                           sites=principal.sites, before=before,
                                           limit=limit + 1)
            if len(rows) > limit:
                rows = rows[:limit]
                next_cursor = encode_cursor(rows[-1].received, rows[-1].id)
        return console.render(
            request, session, fresh, "messages.html", status=400 if problem else 200,
            page="messages", rows=rows, filters=filters, problem=problem,
            next_cursor=next_cursor, statuses=STATUSES,
            sites=data.visible_sites(network, principal),
            query={**{k: v for k, v in filters.items() if v},
                   **({"limit": str(limit)} if limit != PAGE else {})})

    @router.get("/messages/{message_id}")
    async def message_page(request: Request, message_id: int) -> Response:
        got = console.guard(request, scope(ADMIN))
        if isinstance(got, Response):
            return got
        session, fresh, principal = got
        record = await asyncio.to_thread(store.inbox_get, message_id)
        if record is None or (principal.sites is not None and record.site not in
                              principal.sites):
            return console.render(request, session, fresh, "missing.html", status=404,
                                  page="messages", what=f"message {message_id}")
        refs = await asyncio.to_thread(_visible_refs, console, principal, record.resource_refs)
        issues = (record.report or {}).get("issue", [])
        return console.render(request, session, fresh, "message.html", page="messages",
                              m=record, issues=issues, refs=refs,
                              ack=decode(record.ack).replace("\r", "\n").strip()
                              if record.ack else None,
                              may_raw=principal.has(RAW), may_replay=console.service is not None)

    @router.get("/messages/{message_id}/raw")
    async def raw_page(request: Request, message_id: int, unmasked: bool = False) -> Response:
        got = console.guard(request, scope(RAW))
        if isinstance(got, Response):
            return got
        session, fresh, principal = got
        record = await asyncio.to_thread(store.inbox_get, message_id)
        if record is None or (principal.sites is not None and record.site not in
                              principal.sites):
            return console.render(request, session, fresh, "missing.html", status=404,
                                  page="messages", what=f"message {message_id}")
        hl7 = record.transport not in ("file", "fhir")
        text = readable(record.raw, masked=not unmasked) if hl7 or unmasked else None
        return console.render(request, session, fresh, "raw.html", page="messages",
                              m=record, text=text, unmasked=unmasked, hl7=hl7)

    @router.post("/replay")
    async def replay_page(request: Request) -> Response:
        got = console.guard(request, scope(ADMIN))
        if isinstance(got, Response):
            return got
        session, fresh, principal = got
        form = await request.form()
        if not session.csrf_ok(_text(form.get("csrf"))):
            return console.render(request, session, fresh, "refused.html", status=403,
                                  reason="the form's CSRF token is missing or stale: "
                                  "reload the page and try again")
        ids = [int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isdigit()]
        request.state.audit = {"subtype": "replay", "entity": [f"inbox/{i}" for i in ids]}
        if not ids or console.service is None:
            return console.render(request, session, fresh, "missing.html", status=400,
                                  page="messages", what="a message to replay (none chosen)"
                                  if ids == [] else "a replay on this node (no ingest)")
        records = await asyncio.to_thread(lambda: [store.inbox_get(i) for i in ids[:500]])
        found = [r for r in records if r is not None and (principal.sites is None
                                                          or r.site in principal.sites)]
        if form.get("confirm") != "yes":
            return console.render(request, session, fresh, "replay_confirm.html",
                                  page="messages", records=found)
        outcomes = []
        for record in found:
            outcome = await console.service.replay_async(record)
            outcomes.append({"id": record.id, "control_id": record.control_id,
                             "status": outcome.status, "ack": outcome.ack_code,
                             "changed": outcome.changed, "retired": outcome.retired})
        return console.render(request, session, fresh, "replay_done.html", page="messages",
                              outcomes=outcomes)

    @router.get("/unmapped")
    async def unmapped_page(request: Request) -> Response:
        got = console.guard(request, scope(ADMIN))
        if isinstance(got, Response):
            return got
        session, fresh, principal = got
        sites = await asyncio.to_thread(data.unmapped_codes, store, network, principal)
        return console.render(request, session, fresh, "unmapped.html", page="unmapped",
                              sites=sites)

    @router.get("/studies")
    async def studies_page(request: Request) -> Response:
        got = console.guard(request, _studies_need)
        if isinstance(got, Response):
            return got
        session, fresh, principal = got
        # per restriction, for STUDIES_SECONDS: enrolments and weekly counts move slowly
        key = ("studies", principal.studies, principal.sites, principal.anonymous)
        studies = await asyncio.to_thread(console.cached, key, STUDIES_SECONDS,
                                          lambda: (console.now(), data.studies(
                                              store, principal, console.now())))
        return console.render(request, session, fresh, "studies.html", page="studies",
                              studies=studies[1], as_of=studies[0],
                              restricted=principal.restricted)

    @router.get("/exports")
    async def exports_page(request: Request) -> Response:
        got = console.guard(request, scope(ADMIN))
        if isinstance(got, Response):
            return got
        session, fresh, principal = got
        imports = await asyncio.to_thread(data.lab_exports, store, network, principal)
        return console.render(request, session, fresh, "exports.html", page="exports",
                              imports=imports)

    @router.get("/bus")
    async def bus_page(request: Request) -> Response:
        got = console.guard(request, scope(ADMIN))
        if isinstance(got, Response):
            return got
        session, fresh, principal = got
        status = console.bus.status() if console.bus is not None else None
        return console.render(request, session, fresh, "bus.html", page="bus", bus=status)

    return router


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _filter_problem(filters: dict[str, str | None]) -> str | None:
    """A filter the browser cannot apply, named (shown on the page, answered 400)."""
    if filters["status"] is not None and filters["status"] not in STATUSES:
        return f"status: one of {', '.join(STATUSES)}"
    for name in ("since", "until"):
        value = filters[name]
        if value is not None:
            try:
                normalise_instant(value)
            except ValueError:
                return f"{name}: not a date or instant (e.g. 2026-11-01 or 2026-11-01T08:00Z)"
    return None


def _visible_refs(console: Console, principal: Principal, refs: list[str]) -> list[str]:
    """The resources a message wrote that this caller may see (all when unrestricted)."""
    restrict = restriction_of(principal)
    if restrict is None:
        return refs
    out = []
    for ref in refs:
        rtype, rid = ref.split("/")[:2]
        if console.store.read(rtype, rid, restrict=restrict) is not None:
            out.append(ref)
    return out

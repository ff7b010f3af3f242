"""``GET /admin/unmapped-codes``: local codes seen without a code-map entry, per site.

Derived from what the store already keeps, no table of its own: the mapping reports an
unmapped code as an issue ``code-invalid`` at ``OBX[n]-3`` in the inbox record's report;
the raw message (kept at the edge) gives the code at that position.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from gateway.errors import ParseError
from gateway.hl7.parser import parse
from gateway.store.base import InboxRecord, Store

UNMAPPED = "code-invalid"
_OBX_3 = re.compile(r"^OBX\[(\d+)\]-3")


def _positions(report: dict[str, Any] | None) -> list[int]:
    out = []
    for issue in (report or {}).get("issue", []):
        if issue.get("code") != UNMAPPED:
            continue
        for location in issue.get("location", []):
            match = _OBX_3.match(location)
            if match:
                out.append(int(match.group(1)))
    return out


def _codes(record: InboxRecord) -> list[tuple[str, str]]:
    positions = _positions(record.report)
    if not positions or record.transport == "file":
        return []
    try:
        obx = parse(record.raw).all("OBX")
    except ParseError:
        return []
    return [(obx[n - 1].get(3, 1), obx[n - 1].get(3, 3)) for n in positions if n <= len(obx)]


def count_unmapped(records: Iterable[InboxRecord]) -> dict[str, list[dict[str, Any]]]:
    """site → [{code, coding_system, count, last_seen}], most frequent first."""
    counts: dict[str, Counter[tuple[str, str]]] = {}
    last: dict[tuple[str, str, str], str] = {}
    for record in records:
        for code in _codes(record):
            site = record.site or "?"
            counts.setdefault(site, Counter())[code] += 1
            last[(site, *code)] = max(last.get((site, *code), ""), record.received)
    return {site: [{"code": c, "coding_system": s, "count": n, "last_seen": last[(site, c, s)]}
                   for (c, s), n in counter.most_common()]
            for site, counter in sorted(counts.items())}


def admin_codes_router(store: Store) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/unmapped-codes")
    async def unmapped_codes(site: str | None = None) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            return count_unmapped(store.inbox_iter(status="processed", site=site))
        return {"sites": await run_in_threadpool(work)}

    return router

"""``GET /admin/unmapped-codes``: local codes seen without a code-map entry, per site.

Derived from what the store already keeps, no table of its own: the mapping reports an
unmapped code as an issue ``code-invalid`` at ``OBX[n]-3`` in the inbox record's report;
the raw message (kept at the edge) gives the code at that position.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from gateway.adapters.labexport.reader import ExportFileError, read_table
from gateway.adapters.loader import Network
from gateway.adapters.site import Site
from gateway.errors import ParseError
from gateway.hl7.parser import Message, parse
from gateway.store.base import InboxRecord, Store

UNMAPPED = "code-invalid"
_OBX_3 = re.compile(r"^OBX\[(\d+)\]-3")
_ROW_CODE = re.compile(r"^row\[(\d+)\]\.test_code$")


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


def _export_codes(record: InboxRecord, network: Network | None) -> list[tuple[str, str]]:
    site = network.sites.get(record.site or "") if network else None
    return export_unmapped(record, site)


def export_unmapped(record: InboxRecord, site: Site | None) -> list[tuple[str, str]]:
    """Lab-export rows rejected for an unknown local code (``row[n].test_code``)."""
    rows = {int(m.group(1)) for issue in (record.report or {}).get("issue", [])
            if issue.get("code") == UNMAPPED for loc in issue.get("location", [])
            if (m := _ROW_CODE.match(loc))}
    if not rows or site is None:
        return []
    try:
        table = read_table(record.raw, site)
    except ExportFileError:
        return []
    return [(values.get("test_code", ""), "local") for n, values in table.rows
            if n in rows and values.get("test_code")]


def _source_codes(record: InboxRecord) -> list[tuple[str, str]]:
    """FHIR-source rounds keep their unmapped codes in their own record (``unmapped``)."""
    try:
        kept = json.loads(record.raw).get("unmapped", [])
    except (ValueError, AttributeError):
        return []
    return [(str(code), str(system)) for code, system in kept]


def _codes(record: InboxRecord, network: Network | None = None) -> list[tuple[str, str]]:
    if record.transport == "file":
        return _export_codes(record, network)
    if record.transport == "fhir":
        return _source_codes(record)
    return hl7_unmapped(record.report, record.raw)


def hl7_unmapped(report: dict[str, Any] | None, raw: bytes,
                 message: Message | None = None) -> list[tuple[str, str]]:
    """(OBX-3.1, OBX-3.3) of every OBX that the report names as unmapped (``message``: the
    parsed ``raw``, when the caller has it)."""
    positions = _positions(report)
    if not positions:
        return []
    try:
        obx = (message or parse(raw)).all("OBX")
    except ParseError:
        return []
    return [(obx[n - 1].get(3, 1), obx[n - 1].get(3, 3)) for n in positions if n <= len(obx)]


CHANNELS = {"file": "lab-export", "fhir": "fhir-source"}  # else HL7 (mllp, http)


def count_unmapped(records: Iterable[InboxRecord],
                   network: Network | None = None) -> dict[str, list[dict[str, Any]]]:
    """site → [{code, coding_system, channels, count, first_seen, last_seen}], most frequent
    first: one entry per site and code, whatever the channel that sent it (the coding
    system is the one HL7 named, else ``local``)."""
    return tally((r.site, r.transport, r.received, _codes(r, network)) for r in records)


def tally(named: Iterable[tuple[str | None, str, str, Iterable[Sequence[str]]]]
          ) -> dict[str, list[dict[str, Any]]]:
    """``count_unmapped`` from (site, transport, received, [(code, system), …]) per record
    (the inbox's ``unmapped`` column keeps those codes since revision 0007)."""
    counts: dict[str, Counter[str]] = {}
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for site_id, transport, received, codes in named:
        channel = CHANNELS.get(transport, "hl7")
        site = site_id or "?"
        for code, system in codes:
            counts.setdefault(site, Counter())[code] += 1
            entry = seen.setdefault((site, code), {"systems": set(), "channels": set(),
                                                   "first_seen": received, "last_seen": ""})
            entry["systems"].add(system)
            entry["channels"].add(channel)
            entry["first_seen"] = min(entry["first_seen"], received)
            entry["last_seen"] = max(entry["last_seen"], received)
    return {site: [_entry(code, n, seen[(site, code)]) for code, n in counter.most_common()]
            for site, counter in sorted(counts.items())}


def _entry(code: str, count: int, seen: dict[str, Any]) -> dict[str, Any]:
    systems = sorted(seen["systems"] - {"local"}) or ["local"]
    return {"code": code, "coding_system": systems[0], "channels": sorted(seen["channels"]),
            "count": count, "first_seen": seen["first_seen"], "last_seen": seen["last_seen"]}


def admin_codes_router(store: Store, network: Network | None = None) -> APIRouter:
    """With ``network``, lab-export rows rejected for an unknown code are counted too."""
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/unmapped-codes")
    async def unmapped_codes(site: str | None = None) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            return count_unmapped(store.inbox_iter(status="processed", site=site), network)
        return {"sites": await run_in_threadpool(work)}

    return router

"""Time to first byte of each console page with 100k messages stored (issue 13: < 200 ms).

Fills a SQLite store with ``--messages`` inbox rows over the last ``--days`` days, spread
over the nine example sites (the sample messages as raw bytes, 17 resource references,
ACK latencies, 2 % AE, 1 % AR, 3 % with unmapped codes, one lab export in 200, a CRM in
fifty), plus ``--subjects`` enrolled subjects with their Provenance and ``--results``
Observations tagged with a study; then starts the gateway on that store and asks each page
``--rounds`` times (first one cold), reporting the median and the worst time to the
response's first byte.

    .venv/bin/python bench/console.py                   # 100,000 messages
    .venv/bin/python bench/console.py --messages 20000 --keep var/console-bench
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.adapters.loader import EXAMPLE_SITES  # noqa: E402
from gateway.store.base import InboxRecord  # noqa: E402
from gateway.store.content import format_instant  # noqa: E402
from gateway.store.sql import SqlStore  # noqa: E402

SAMPLES = sorted((ROOT / "gateway" / "sites" / "samples").glob("*/*.hl7"))
REPORT = {"resourceType": "OperationOutcome", "issue": [
    {"severity": "warning", "code": "code-invalid", "location": ["OBX[11]-3"],
     "diagnostics": "local observation code not in the site code map"}]}
STUDY = "bench-study"


def inbox_rows(n: int, days: int, rng: random.Random) -> list[InboxRecord]:
    now = datetime.now(UTC)
    raws = [(p.parent.name, p.read_bytes()) for p in SAMPLES]
    refs = [f"Observation/{k:064x}/_history/1" for k in range(17)]
    rows = []
    for k in range(n):
        site, raw = raws[k % len(raws)]
        received = now - timedelta(seconds=rng.uniform(0, days * 86400))
        roll = rng.random()
        status = "error" if roll < 0.02 else "rejected" if roll < 0.03 else "processed"
        kind = "file" if k % 200 == 0 else "mllp"
        mtype = "LAB-EXPORT" if kind == "file" else "CRM^C01" if k % 50 == 1 else "ORU^R01"
        unmapped = status == "processed" and rng.random() < 0.03
        rows.append(InboxRecord(
            "LIS", site.upper(), f"B{k:07d}", raw, format_instant(received), kind, site=site,
            message_type=mtype, status=status, ack=b"MSH|^~\\&|GATEWAY\rMSA|AA|x",
            error="OBX[1]-5: not a valid NM" if status == "error" else None,
            report=REPORT if unmapped else None,
            resource_refs=refs if status == "processed" else [], ack_ms=rng.randint(3, 80),
            unmapped=[("NOTMAPPED9", "L")] if unmapped else []))
    return rows


def resources(subjects: int, results: int, rng: random.Random) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    out: list[dict[str, Any]] = [{"resourceType": "ResearchStudy", "id": STUDY,
                                  "status": "active", "title": "Bench study"}]
    for k in range(subjects):
        out.append({"resourceType": "ResearchSubject", "id": f"rs-{k}",
                    "status": "on-study" if k % 7 else "off-study",
                    "study": {"reference": f"ResearchStudy/{STUDY}"},
                    "individual": {"reference": f"Patient/pt-{k}"},
                    "period": {"start": (now - timedelta(days=k % 300)).date().isoformat()}})
        out.append({"resourceType": "Provenance", "id": f"pv-{k}",
                    "target": [{"reference": f"ResearchSubject/rs-{k}"}],
                    "recorded": format_instant(now),
                    "agent": [{"who": {"reference": "Organization/org-hsr"}}]})
    for k in range(results):
        when = now - timedelta(days=rng.uniform(0, 180))
        out.append({"resourceType": "Observation", "id": f"ob-{k}", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}]},
                    "subject": {"reference": f"Patient/pt-{k % max(subjects, 1)}"},
                    "effectiveDateTime": format_instant(when),
                    "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/"
                                   "workflow-researchStudy",
                                   "valueReference": {"reference": f"ResearchStudy/{STUDY}"}}]})
    return out


def fill(url: str, args: argparse.Namespace) -> None:
    rng = random.Random(13)  # noqa: S311 - benchmark data
    store = SqlStore(url)
    store.migrate()
    start = time.perf_counter()
    rows = inbox_rows(args.messages, args.days, rng)
    for offset in range(0, len(rows), 5000):
        with store.transaction() as tx:
            tx.inbox_insert_many(rows[offset:offset + 5000])
    print(f"  {len(rows)} inbox rows in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    store.bulk_put(resources(args.subjects, args.results, rng))
    store.bulk_put([{"resourceType": "Organization", "id": "org-hsr", "identifier": [
        {"system": "urn:plagencell:site", "value": "hsr"}]}])
    store.optimize()
    store.close()


async def measure(url: str, data_dir: Path, rounds: int) -> list[tuple[str, float, float, float]]:
    import httpx

    from gateway.bus.settings import BusSettings
    from gateway.config import Settings
    from gateway.runtime import Gateway

    gw = Gateway(Settings(http_port=0, mllp_port=0, data_dir=data_dir, database_url=url,
                          sites=EXAMPLE_SITES, bus=BusSettings(node_id="bench")))
    await gw.start()
    out = []
    try:
        assert gw.store is not None
        base = f"http://127.0.0.1:{gw.http_port}"
        some = gw.store.inbox_find("LIS", "HPG23", "B0000005")
        ident = some.id if some is not None else 1
        pages = ["/console", "/console/messages", "/console/messages?site=hpg23",
                 "/console/messages?status=error", "/console/messages?type=CRM",
                 "/console/messages?control_id=B0050000", f"/console/messages/{ident}",
                 f"/console/messages/{ident}/raw", "/console/unmapped", "/console/studies",
                 "/console/exports", "/console/bus"]
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            for page in pages:
                times = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    async with http.stream("GET", page) as answer:
                        first = time.perf_counter()  # status line and headers: first byte
                        await answer.aread()
                        assert answer.status_code == 200, (page, answer.status_code)
                    times.append((first - start) * 1000)
                out.append((page, times[0], statistics.median(times[1:]), max(times[1:])))
    finally:
        await gw.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--subjects", type=int, default=600)
    parser.add_argument("--results", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--keep", type=Path, help="a directory for the store (kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{workdir / 'console.db'}"
        if not (workdir / "console.db").exists():
            fill(url, args)
        results = asyncio.run(measure(url, workdir / "var", args.rounds))
    print(f"{'page':<44} {'cold ms':>8} {'median ms':>10} {'max ms':>8}")
    for page, cold, median, worst in results:
        print(f"{page:<44} {cold:>8.1f} {median:>10.1f} {worst:>8.1f}")


if __name__ == "__main__":
    main()

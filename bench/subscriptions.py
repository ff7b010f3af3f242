"""Subscription notification latency: from a resource becoming visible in the FHIR API to
its rest-hook notification arriving at a real HTTP receiver, on SQLite or PostgreSQL.

    .venv/bin/python bench/subscriptions.py --db sqlite --n 500
    .venv/bin/python bench/subscriptions.py --db postgresql --n 500
    .venv/bin/python bench/subscriptions.py --db sqlite --n 500 --dead 5   # + 5 dead receivers

A gateway (role all, anonymous on loopback) and a receiver (a threaded ``http.server``)
run in this process. One subscription (criteria ``Observation?code=…``, payload
``application/fhir+json``) points at the receiver; ``--dead`` adds subscriptions on the same
criteria whose receivers refuse connections (they retry with backoff meanwhile). Then ``n``
Observations are written with ``PUT /fhir/Observation/{id}``, ``--rate`` per second; the
moment the PUT's answer arrives is when the resource is visible; the latency is the
notification's arrival minus that. Prints p50, p90, p99 and max.

``--write-cost N`` measures instead what the change queue's trigger costs the hub's writes:
N Observations applied as the projector applies them (``prepare_versions`` then
``apply_versions``, 2,000 a transaction; COPY on PostgreSQL) with no subscription, with one
on Observation (every version queued) and with one on another type (Specimen), then again
without and with (the order shows the warm-up); resources/s of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import drop_pg, pg_database  # noqa: E402
from gateway.bus.settings import BusSettings  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.runtime import Gateway  # noqa: E402

CODE = "http://loinc.org|26464-8"
arrived: dict[str, float] = {}


class Handler(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        arrived.setdefault(self.path.rsplit("/", 1)[-1], time.time())
        self._ok()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._ok()

    def _ok(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def observation(id: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "26464-8"}]},
            "subject": {"reference": "Patient/bench"},
            "valueQuantity": {"value": 5.1, "unit": "10*9/L"}}


def subscription(endpoint: str) -> dict[str, Any]:
    return {"resourceType": "Subscription", "status": "requested", "reason": "bench",
            "criteria": f"Observation?code={CODE}",
            "channel": {"type": "rest-hook", "endpoint": endpoint,
                        "payload": "application/fhir+json"}}


async def run(database_url: str | None, n: int, rate: float, dead: int) -> list[float]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        gateway = Gateway(Settings(http_port=0, mllp_port=0, data_dir=Path(tmp),
                                   database_url=database_url,
                                   bus=BusSettings(node_id="bench")))
        await gateway.start()
        try:
            base = f"http://127.0.0.1:{gateway.http_port}/fhir"
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                port = server.server_address[1]
                made = await http.post("/Subscription", json=subscription(
                    f"http://127.0.0.1:{port}/hook"))
                for _ in range(dead):  # port 9 (discard): connection refused
                    await http.post("/Subscription", json=subscription("http://127.0.0.1:9/x"))
                for _ in range(600):
                    found = await http.get(f"/Subscription/{made.json()['id']}")
                    if found.json()["status"] == "active":
                        break
                    await asyncio.sleep(0.05)
                visible: dict[str, float] = {}
                for i in range(n):
                    r = await http.put(f"/Observation/b{i}", json=observation(f"b{i}"))
                    visible[f"b{i}"] = time.time()
                    assert r.status_code in (200, 201), r.text
                    await asyncio.sleep(1 / rate)
                for _ in range(600):  # 30 s at most
                    if len(arrived) >= n:
                        break
                    await asyncio.sleep(0.05)
        finally:
            await gateway.stop()
            server.shutdown()
    missing = n - len(arrived)
    if missing:
        print(f"{missing} notifications did not arrive within 30 s")
    return [arrived[k] - visible[k] for k in visible if k in arrived]


def write_cost(database_url: str, n: int,
               order: tuple[str | None, ...] = (None, "Specimen", "Observation")) -> None:
    from gateway.store.sql import SqlStore
    from gateway.store.subscriptions import (
        SubscriptionRow,
        delete_subscription,
        insert_subscription,
    )

    for run, watched in enumerate(order):
        store = SqlStore(database_url)
        store.migrate()
        if watched:
            insert_subscription(store, SubscriptionRow(
                id=f"s{run}", res_type=watched, status="active", client_id="bench",
                principal={}, content=subscription("http://127.0.0.1:9/x")))
        started = time.perf_counter()
        for start in range(0, n, 2000):
            versions = [{**observation(f"r{run}-{i}"),
                         "meta": {"versionId": "1", "lastUpdated": "2026-12-03T10:00:00.000Z"}}
                        for i in range(start, min(n, start + 2000))]
            prepared = store.prepare_versions(versions)
            with store.transaction() as tx:
                tx.apply_versions(prepared)
        seconds = time.perf_counter() - started
        print(f"  subscription on {watched or 'nothing'}: {n / seconds:,.0f} resources/s")
        delete_subscription(store, f"s{run}")
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="writes per second")
    parser.add_argument("--dead", type=int, default=0, help="subscriptions to dead receivers")
    parser.add_argument("--write-cost", type=int, default=0, metavar="N",
                        help="measure the change-queue trigger's cost on N projected writes")
    args = parser.parse_args()
    url, name = pg_database("bench_subs") if args.db == "postgresql" else (None, None)
    if args.write_cost:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{args.db}: {args.write_cost} Observations applied as the projector does")
            try:
                write_cost(url or f"sqlite:///{tmp}/bench.db", args.write_cost,
                           (None, "Observation", "Specimen", None, "Observation"))
            finally:
                if name:
                    drop_pg(name)
        return
    try:
        latencies = sorted(asyncio.run(run(url, args.n, args.rate, args.dead)))
    finally:
        if name:
            drop_pg(name)
    q = statistics.quantiles(latencies, n=100)
    print(f"{args.db}: {len(latencies)} notifications, {args.rate:g} writes/s, "
          f"{args.dead} dead subscriptions")
    print(f"latency visible → notified: p50 {q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms,"
          f" p99 {q[98] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()

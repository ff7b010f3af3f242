"""Bulk Data export throughput and memory: N Observations (``bulk_put``, as bench/store.py
makes them) exported by one ``$export`` job, on SQLite or PostgreSQL.

    .venv/bin/python bench/export.py --db sqlite --n 1000000
    .venv/bin/python bench/export.py --db postgresql --n 1000000
    .venv/bin/python bench/export.py --db sqlite --n 50000          # a quick run

The Observations are written straight into the ``resource`` table (current rows, all an
export reads), in 10,000-row statements: through ``bulk_put`` with the search index 1M take
~8 minutes on this machine, and the index plays no part in an unfiltered export.

Prints the load rate, then the export: resources/s (kick-off to completed job, all files
written) and the process RSS at the start of the export, its peak while the job ran
(sampled every 20 ms) and at the end. The scratch database and files are removed.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import drop_pg, pg_database  # noqa: E402
from bench.store import observation  # noqa: E402
from gateway.export.manager import ExportManager  # noqa: E402
from gateway.export.request import read_request  # noqa: E402
from gateway.security.principal import ANONYMOUS  # noqa: E402
from gateway.store import schema  # noqa: E402
from gateway.store.sql import SqlStore  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_mb()
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.samples.append(rss_mb())
            self.peak = max(self.peak, self.samples[-1])

    def quartiles(self) -> str:
        """RSS at a quarter, half and three quarters of the run: flat, or growing?"""
        n = len(self.samples)
        return ", ".join(f"{self.samples[n * q // 4]:.0f}" for q in (1, 2, 3)) if n else "-"


def export(store: SqlStore, folder: Path, n: int, note: str = "") -> None:
    manager = ExportManager(store, folder)
    manager.start()
    request = read_request("system", [("_type", "Observation")])
    start_rss, sampler = rss_mb(), Peak()
    sampler.start()
    start = time.perf_counter()
    job = manager.kick_off(request, ANONYMOUS, "bench", "http://bench/fhir", None, None)
    while (found := manager.jobs.get(job)) is not None and found["status"] != "completed":
        if found["status"] == "error":
            raise SystemExit(f"export failed: {found['error']}")
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    assert found is not None
    count = found["manifest"]["output"][0]["count"]
    size = sum(p.stat().st_size for p in (folder / "exports" / job).iterdir())
    print(f"export {count} Observations in {elapsed:.1f} s = {count / elapsed:,.0f} "
          f"resources/s ({size / 2**20:.0f} MB NDJSON)")
    print(f"RSS MB: start {start_rss:.0f}, at 1/4, 1/2, 3/4 of the run "
          f"{sampler.quartiles()}, peak {sampler.peak:.0f}, end {rss_mb():.0f}{note}")
    assert count == n, (count, n)
    manager.stop()


def load(store: SqlStore, n: int) -> None:
    rng, now = random.Random(1), "2026-12-01T00:00:00.000Z"
    start = time.perf_counter()
    for offset in range(0, n, 10_000):
        rows = []
        for i in range(offset, min(n, offset + 10_000)):
            resource = {**observation(i, rng), "meta": {"versionId": "1", "lastUpdated": now}}
            rows.append({"res_type": "Observation", "res_id": resource["id"], "version_id": 1,
                         "last_updated": now, "deleted": False,
                         "content": orjson.dumps(resource), "content_hash": None})
        with store.transaction() as tx:
            tx.conn.execute(insert(schema.resource), rows)
    elapsed = time.perf_counter() - start
    print(f"loaded {n} in {elapsed:.1f} s = {n / elapsed:,.0f}/s")
    store.optimize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    name = None
    if args.db == "sqlite":
        url = f"sqlite:///{folder / 'gateway.db'}"
    else:
        url, name = pg_database("bench_export")
    store = SqlStore(url)
    try:
        store.migrate()
        load(store, args.n)
        print(f"{args.db}: {args.n} Observations loaded")
        note = (" (SQLite's page cache, cache_size 32 MB per connection, is part of it)"
                if args.db == "sqlite" else "")
        export(store, folder, args.n, note)
    finally:
        store.close()
        if name:
            drop_pg(name)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

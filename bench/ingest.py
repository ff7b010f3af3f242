"""End-to-end ingest benchmark: N concurrent MLLP senders, M messages in all (the 10-OBX
ORU^R01 sample, each with its own MSH-10 and its own patient and order numbers, so every
message creates new resources), send → ACK with durable commits, against a real
``gateway serve`` (default ``--role edge``: the ingest edge with its lean store, relaying to
the embedded bus; ``--role all`` also keeps history and search index for the FHIR API).

Prints messages/s and p50/p99 ACK latency for each number of senders, beside the
naive-split parse rate measured in the same run. Target: ≥ 10 % of the naive rate
(≈ 1,000 msg/s on a 2-core machine).

    .venv/bin/python bench/ingest.py [--senders 8,32] [--messages 4000] [--role edge|all]
                                     [--db sqlite|postgresql]

``--db postgresql`` runs each point on a new scratch database (``bench/scratch.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from scratch import drop_pg, pg_database  # bench/scratch.py

from gateway.hl7.mllp import MllpClient

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "samples" / "oru_r01_10obx.hl7"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample_text() -> str:
    text = SAMPLE.read_text(encoding="utf-8").replace("\r\n", "\r").replace("\n", "\r")
    return text.strip("\r") + "\r"


def with_control_id(text: str, control_id: str, *, new_data: bool = True) -> bytes:
    """The sample with its own MSH-10; with ``new_data`` also its own patient (PID-3) and
    order numbers, so that every message creates new resources (not no-op updates)."""
    first, _, rest = text.partition("\r")
    fields = first.split("|")
    fields[3] = "HPG23"  # MSH-4: a known site
    fields[9] = control_id  # MSH-10
    if new_data:
        n = control_id[-8:]
        for old, new in (("MRN0048213", f"MRN{n}"), ("RSSMRA70A01A794X", f"RSSMRA70A01A{n[-3:]}X"),
                         ("ORD-2026-55123", f"ORD-{n}"), ("LAB-2026-998877", f"LAB-{n}")):
            rest = rest.replace(old, new)
    return ("|".join(fields) + "\r" + rest).encode()


def naive_rate(text: str, seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        [seg.split("|") for seg in text.split("\r")]
        n += 1
    return n / (time.perf_counter() - start)


async def sender(port: int, messages: list[bytes], latencies: list[float]) -> int:
    ok = 0
    async with await MllpClient.connect("127.0.0.1", port, timeout=30) as client:
        for message in messages:
            start = time.perf_counter()
            [answer] = await client.send(message)
            latencies.append(time.perf_counter() - start)
            ok += b"MSA|AA|" in answer
    return ok


async def run_load(port: int, senders: int, total: int) -> tuple[float, list[float], int]:
    text = sample_text()
    run = os.urandom(3).hex()
    batches = [[with_control_id(text, f"B{run}{s:02d}{i:07d}") for i in range(total // senders)]
               for s in range(senders)]
    latencies: list[float] = []
    start = time.perf_counter()
    oks = await asyncio.gather(*(sender(port, b, latencies) for b in batches))
    return time.perf_counter() - start, latencies, sum(oks)


def start_gateway(data_dir: str, database_url: str | None,
                  role: str) -> tuple[subprocess.Popen[bytes], int]:
    mllp, http = free_port(), free_port()
    cmd = [sys.executable, "-m", "gateway", "--log-level", "WARNING", "serve", "--role", role,
           "--mllp-port", str(mllp), "--http-port", str(http), "--data-dir", data_dir]
    if database_url:
        cmd += ["--database-url", database_url]
    proc = subprocess.Popen(cmd)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=1).status_code == 200:
                return proc, mllp
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gateway did not start")


def measure(args: argparse.Namespace, senders: int) -> None:
    url, name = pg_database("bench_ingest") if args.db == "postgresql" else (None, None)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_gateway(tmp, url, args.role)
        try:
            asyncio.run(run_load(port, 2, 100))  # warm-up
            elapsed, lat, ok = asyncio.run(run_load(port, senders, args.messages))
        finally:
            proc.terminate()
            proc.wait(30)
            if name:
                drop_pg(name)
    lat.sort()
    rate = len(lat) / elapsed
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"{senders:>7} {len(lat):>8} {ok:>6} {rate:>9,.0f} {statistics.median(lat) * 1000:>8.1f}"
          f" {p99 * 1000:>8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--senders", default="8,32",
                        help="concurrent MLLP connections; a comma-separated list measures "
                             "each (a fresh gateway and database per point)")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="SQLite in a temporary data dir (default), or a scratch "
                             "PostgreSQL database")
    parser.add_argument("--role", default="edge", choices=("edge", "all"),
                        help="edge (default: the ingest edge's lean store, relaying to the "
                             "embedded bus) or all (also history and search index for the "
                             "FHIR API)")
    args = parser.parse_args()
    naive = naive_rate(sample_text())
    print(f"role {args.role}, database {args.db}; "
          f"send → ACK with durable commits")
    print(f"naive split parse: {naive:,.0f} msg/s (same run); target ≥ 10 % of it, "
          f"≈ 1,000 msg/s on a 2-core machine")
    print("senders messages     AA     msg/s  p50 ms   p99 ms")
    for senders in (int(n) for n in args.senders.split(",")):
        measure(args, senders)


if __name__ == "__main__":
    main()

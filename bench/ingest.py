"""End-to-end ingest benchmark: N concurrent MLLP senders, M messages in all (the 10-OBX
ORU^R01 sample, each with its own MSH-10 and its own patient and order numbers, so every
message creates new resources), send → ACK with durable commits, against a real
``gateway serve`` per role: ``edge`` (the ingest edge with its lean store, relaying to the
embedded bus) and ``all`` (the same edge store, plus the embedded bus, the projector and
the hub store that the FHIR API serves, in one process), in one run.

Prints messages/s and p50/p99 ACK latency for each role and number of senders, the ratio
``all``/``edge`` (target ≥ 90 %), and for ``all`` the time from an AA to the message's
resources being visible in the FHIR API (target p99 ≤ 300 ms), measured in two more
loads of ``--probe-messages`` on the same gateway (so that the probing does not cost the
throughput figure): one as fast as the senders are answered, one paced at ``--paced``
(half) of the ``all`` throughput just measured. After an AA, while no other probe runs,
a poller asks ``GET /fhir/Provenance/{id}`` (the message's Provenance, written last; its
id computed from the gateway's pseudonym key, as the mapping does) every ``--poll-ms``
until it answers 200. At full load the projector (the hub store's search index: ~3x the
edge's write per message) falls behind whatever the ingest outruns, so that figure is
the backlog's; the paced one is the path's own delay. Also the naive-split parse rate
measured in the same run (target ≥ 10 % of it).

    .venv/bin/python bench/ingest.py [--senders 8,32] [--messages 4000] [--roles edge,all]
                                     [--db sqlite|postgresql] [--probe-messages 1000]
                                     [--paced 0.5] [--poll-ms 5] [--repeat 1]

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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from scratch import drop_pg, pg_database  # bench/scratch.py

from gateway.hl7.mllp import MllpClient
from gateway.mapping.context import resource_id
from gateway.mapping.provenance import message_hash
from gateway.mapping.pseudonym import read_key

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "samples" / "oru_r01_10obx.hl7"
SITE, FACILITY, APPLICATION = "hpg23", "HPG23", "LIS"  # the sample's sender, as mapped


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


@dataclass
class Probe:
    """Polls the FHIR API for the Provenance of sampled messages after their AA."""

    http_port: int
    key: bytes
    poll: float
    client: httpx.AsyncClient | None = None
    visible: list[float] = field(default_factory=list)  # at full load
    missing: int = 0
    paced: float = 0.0  # msg/s of the paced load
    visible_paced: list[float] = field(default_factory=list)
    missing_paced: int = 0
    task: asyncio.Task[None] | None = None

    def after_ack(self, control_id: str) -> None:
        """Probe this message unless a probe is running (one at a time: a light load)."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._watch(control_id, time.perf_counter()))

    async def _watch(self, control_id: str, acked: float) -> None:
        assert self.client is not None
        digest = message_hash(self.key, SITE, FACILITY, control_id)
        url = f"/fhir/Provenance/{resource_id('Provenance', SITE, APPLICATION, digest)}"
        while time.perf_counter() - acked < 60:
            if (await self.client.get(url)).status_code == 200:
                self.visible.append(time.perf_counter() - acked)
                return
            await asyncio.sleep(self.poll)
        self.missing += 1


async def sender(port: int, messages: list[tuple[str, bytes]], latencies: list[float],
                 probe: Probe | None, gap: float = 0.0) -> int:
    """Sends one after the other (``gap``: at most one message per ``gap`` seconds)."""
    ok = 0
    async with await MllpClient.connect("127.0.0.1", port, timeout=30) as client:
        begin = time.perf_counter()
        for n, (control_id, message) in enumerate(messages):
            if gap and (wait := begin + n * gap - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            start = time.perf_counter()
            [answer] = await client.send(message)
            latencies.append(time.perf_counter() - start)
            ok += b"MSA|AA|" in answer
            if probe is not None:
                probe.after_ack(control_id)
    return ok


async def run_load(port: int, senders: int, total: int, probe: Probe | None = None,
                   rate: float = 0.0) -> tuple[float, list[float], int]:
    """``total`` messages from ``senders`` connections, as fast as they are answered or
    (``rate``) at that many messages/s in all."""
    text = sample_text()
    run = os.urandom(3).hex()
    batches = [[(cid, with_control_id(text, cid))
                for cid in (f"B{run}{s:02d}{i:07d}" for i in range(total // senders))]
               for s in range(senders)]
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{probe.http_port}" if probe
                                 else "http://127.0.0.1", timeout=30) as client:
        if probe is not None:
            probe.client = client
        start = time.perf_counter()
        gap = senders / rate if rate else 0.0
        oks = await asyncio.gather(*(sender(port, b, latencies, probe, gap) for b in batches))
        elapsed = time.perf_counter() - start
        if probe is not None and probe.task is not None:
            await probe.task
    return elapsed, latencies, sum(oks)


def start_gateway(data_dir: str, database_url: str | None,
                  role: str) -> tuple[subprocess.Popen[bytes], int, int]:
    mllp, http = free_port(), free_port()
    cmd = [sys.executable, "-m", "gateway", "--log-level", "WARNING", "serve", "--role", role,
           "--mllp-port", str(mllp), "--http-port", str(http), "--data-dir", data_dir]
    if database_url:
        cmd += ["--database-url", database_url]
    proc = subprocess.Popen(cmd)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=1).status_code == 200:
                return proc, mllp, http
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gateway did not start")


@dataclass
class Point:
    role: str
    senders: int
    rate: float
    p50: float
    p99: float
    ok: int
    sent: int
    visible: list[float] = field(default_factory=list)  # at full load
    missing: int = 0
    paced: float = 0.0  # msg/s of the paced load
    visible_paced: list[float] = field(default_factory=list)
    missing_paced: int = 0


def measure(args: argparse.Namespace, role: str, senders: int) -> Point:
    url, name = pg_database("bench_ingest") if args.db == "postgresql" else (None, None)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, http = start_gateway(tmp, url, role)
        try:
            asyncio.run(run_load(port, 2, 100))  # warm-up
            elapsed, lat, ok = asyncio.run(run_load(port, senders, args.messages))
            probes: list[Probe] = []
            if role == "all":
                key = read_key(Path(tmp) / "pseudonym.key")
                paced = len(lat) / elapsed * args.paced
                for rate in (0.0, paced):
                    caught_up(http)  # each load starts with the hub up to date
                    probes.append(Probe(http, key, args.poll_ms / 1000))
                    asyncio.run(run_load(port, senders, args.probe_messages, probes[-1], rate))
        finally:
            proc.terminate()
            proc.wait(30)
            if name:
                drop_pg(name)
    lat.sort()
    point = Point(role, senders, len(lat) / elapsed, statistics.median(lat),
                  percentile(lat, 0.99), ok, len(lat))
    if probes:
        full, slow = probes
        point.visible, point.missing = sorted(full.visible), full.missing
        point.visible_paced, point.missing_paced = sorted(slow.visible), slow.missing
        point.paced = paced
    return point


def caught_up(http: int, limit: float = 600.0) -> None:
    """Wait until the relay and the projector have nothing left (``GET /admin/bus``)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        bus = httpx.get(f"http://127.0.0.1:{http}/admin/bus", timeout=30).json()
        if bus["relay"]["pending"] == 0 and bus["projector"]["lag_total"] == 0:
            return
        time.sleep(0.5)
    raise SystemExit("the projector did not catch up")


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def report(point: Point, edge: Point | None) -> None:
    ratio = f"{point.rate / edge.rate:>6.0%}" if edge is not None and point.role != "edge" \
        else "      "
    line = (f"{point.role:>4} {point.senders:>7} {point.sent:>8} {point.ok:>6} "
            f"{point.rate:>9,.0f} {ratio} {point.p50 * 1000:>7.1f} {point.p99 * 1000:>7.1f}")
    if point.visible or point.missing:
        line += visibility(point.visible, point.missing)
        line += f"  | {point.paced:>5,.0f}" + visibility(point.visible_paced,
                                                        point.missing_paced)
    print(line, flush=True)


def visibility(v: list[float], missing: int) -> str:
    return (f"  {len(v):>4} {percentile(v, 0.5) * 1000:>7.1f} {percentile(v, 0.99) * 1000:>7.1f}"
            f" {v[-1] * 1000 if v else 0:>7.1f}{f' ({missing} lost)' if missing else ''}")


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
    parser.add_argument("--roles", default="edge,all",
                        help="roles to measure, in this order, at each number of senders "
                             "(default edge,all: the ratio needs both)")
    parser.add_argument("--probe-messages", type=int, default=1000,
                        help="role all: messages of each visibility load (default 1000)")
    parser.add_argument("--paced", type=float, default=0.5,
                        help="role all: the second visibility load runs at this fraction of "
                             "the measured all throughput (default 0.5)")
    parser.add_argument("--poll-ms", type=float, default=5.0,
                        help="how often a probe asks the API, ms (default 5)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each role this many times per number of senders, "
                             "alternating, and print the median all/edge ratio (a shared "
                             "machine's rates vary by ±20 %% from one run to the next)")
    args = parser.parse_args()
    naive = naive_rate(sample_text())
    print(f"database {args.db}; send → ACK with durable commits; {args.messages} messages")
    print(f"naive split parse: {naive:,.0f} msg/s (same run); target ≥ 10 % of it, "
          f"≈ 1,000 msg/s on a 2-core machine")
    print("targets: all ≥ 90 % of edge (msg/s); ACK → visible in the FHIR API p99 ≤ 300 ms")
    print("ACK → visible, ms: n probes, p50, p99, max; at full load, then at a paced load "
          "(msg/s)")
    print("role senders messages     AA     msg/s  /edge  p50 ms  p99 ms"
          "  | full:  n     p50     p99     max  | paced:   n     p50     p99     max")
    roles = args.roles.split(",")
    for senders in (int(n) for n in args.senders.split(",")):
        ratios: list[float] = []
        for _ in range(args.repeat):
            edge: Point | None = None
            for role in roles:
                point = measure(args, role, senders)
                edge = point if role == "edge" else edge
                report(point, edge)
                if role != "edge" and edge is not None:
                    ratios.append(point.rate / edge.rate)
        if args.repeat > 1 and ratios:
            print(f"{senders} senders, {len(ratios)} runs: all/edge median "
                  f"{statistics.median(ratios):.0%} (min {min(ratios):.0%}, "
                  f"max {max(ratios):.0%})", flush=True)


if __name__ == "__main__":
    main()

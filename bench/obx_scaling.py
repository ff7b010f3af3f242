"""OBX scaling benchmark: one ORU^R01 with N OBX that all carry the same code (the
hostile case of issue 15), from 10 to 20,000 OBX. Prints, for each N, the time of each
step of a message's way and its cost per OBX: parse, map (``map_message``), and the whole
ingest (inbox, parse, map, one store transaction, ACK) on a scratch SQLite file, as the
ingest writer does it. Linear time means flat per-OBX columns. Times are CPU seconds of
this process (the machine is shared: wall-clock time would measure the neighbours).

    .venv/bin/python bench/obx_scaling.py [--sizes 10,100,1000,4000,20000] [--no-store]
                                          [--role all|edge]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gateway.adapters.loader import load_network
from gateway.hl7.parser import parse
from gateway.mapping import map_message

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "samples" / "oru_r01_10obx.hl7"
KEY = b"bench-pseudonym-key-0123456789ab"
RECEIVED = "2026-11-27T08:30:20Z"


def message_with_obx(n: int) -> bytes:
    """The sample with its OBX replaced by ``n`` copies of its first OBX (same OBX-3)."""
    text = SAMPLE.read_text(encoding="utf-8").replace("\r\n", "\r").replace("\n", "\r")
    segments = [s for s in text.split("\r") if s]
    head = [s for s in segments if not s.startswith("OBX")]
    obx = next(s for s in segments if s.startswith("OBX")).split("|")
    body = []
    for i in range(1, n + 1):
        obx[1] = str(i)
        body.append("|".join(obx))
    return ("\r".join(head + body) + "\r").encode()


def timed(func):  # type: ignore[no-untyped-def]
    start = time.process_time()
    out = func()
    return out, time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10,100,1000,2000,4000,20000")
    ap.add_argument("--no-store", action="store_true", help="parse and map only")
    ap.add_argument("--role", choices=("all", "edge"), default="all",
                    help="store profile: all (history + search index) or the lean edge")
    args = ap.parse_args()
    network = load_network()
    print(f"{'OBX':>6} {'bytes':>9} {'parse s':>8} {'map s':>8} {'map µs/OBX':>9} "
          f"{'ingest s':>8} {'ing µs/OBX':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        raw = message_with_obx(n)
        msg, t_parse = timed(lambda raw=raw: parse(raw))
        site = network.site_for(msg.sending_facility)
        assert site is not None, "no example site for the sample's MSH-4"
        result, t_map = timed(lambda msg=msg, site=site: map_message(
            msg, site, pseudonym_key=KEY, received=RECEIVED, studies=network.studies))
        t_ingest = 0.0 if args.no_store else ingest_time(raw, args.role == "edge")
        print(f"{n:6d} {len(raw):9d} {t_parse:8.3f} {t_map:8.3f} {1e6 * t_map / n:9.1f} "
              f"{t_ingest:8.3f} {1e6 * t_ingest / n:9.1f}", flush=True)


def ingest_time(raw: bytes, edge: bool) -> float:
    """The whole ingest of ``raw`` (inbox, parse, map, store write, ACK) on a scratch SQLite
    file, through the writer thread as a sender's message goes (``IngestService.handle``)."""
    from gateway.ingest.service import IngestService
    from gateway.store.sql import SqlStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore(f"sqlite:///{tmp}/bench.db", edge=edge)
        store.migrate()
        try:
            # no limits: the benchmark measures the cost itself
            service = IngestService(store, load_network(), KEY, message_time_budget=None,
                                    max_resources=None)
            start = time.process_time()
            outcome = asyncio.run(service.handle(raw, "mllp"))
            elapsed = time.process_time() - start
            service.stop()
            assert outcome.ack_code == "AA", outcome
            return elapsed
        finally:
            store.close()


if __name__ == "__main__":
    main()

"""Interpreter settings for the hub projector: what the cyclic garbage collector and the
GIL switch interval cost the projector's overlap of preparing and writing.

The projector prepares the next chunk of records (JSON decode, index rows, COPY data:
CPU-bound Python) on one thread while another writes the current chunk to PostgreSQL
(~30 round trips a chunk, each needing the interpreter back). This runs that pipeline
without Kafka (``prepare_chunk`` beside ``apply_segments`` in a transaction, as
``HubProjector.step`` does) on a fresh PostgreSQL hub, under each setting, in
alternation, and reports resources/s (best of ``--rounds``). Every setting starts from
the runtime's own (``gc.freeze()`` once started, ``gateway.runtime``):

* ``frozen``: that alone (switch interval 5 ms, GC thresholds 700/10/10),
* ``gc-off``: + the collector disabled while a chunk is prepared,
* ``switch``: + ``sys.setswitchinterval(0.0005)``.

It also reports the CPU time of preparing one chunk (``time.thread_time``, best of the
rounds: less sensitive to the machine's other load than the pipeline's wall clock) with
the collector on (frozen heap) and off.

    .venv/bin/python bench/interpreter.py [--count 20000] [--rounds 3]

Figures and the decision they led to: docs/store.md, "Interpreter settings".
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from typing import Any

import orjson
from bus import observation  # bench/bus.py
from scratch import drop_pg, pg_database  # bench/scratch.py

import gateway.runtime  # noqa: F401 - the gateway's own heap, as a running hub has it
from gateway.bus.base import Delivery
from gateway.bus.projector import apply_segments, prepare_chunk
from gateway.store.sql import SqlStore

CHUNK = 2000


def records(count: int, version: int) -> list[Delivery]:
    out = []
    for i in range(count):
        resource = {**observation(i, 4.0 + version), "meta": {
            "versionId": str(version), "source": "urn:bench",
            "lastUpdated": f"2026-11-27T10:00:{version % 60:02d}.000Z"}}
        out.append(Delivery("t", 0, i, f"Observation/{resource['id']}",
                            orjson.dumps(resource), {"version-id": str(version)}))
    return out


def pipeline(store: SqlStore, recs: list[Delivery]) -> float:
    """Resources/s of the projector's overlap: chunk n written while n+1 is prepared."""
    chunks = [recs[i:i + CHUNK] for i in range(0, len(recs), CHUNK)]
    started = time.perf_counter()
    ready = prepare_chunk(store, chunks[0])
    for n in range(len(chunks)):
        current = ready
        assert current.segments is not None

        def write(segments: Any = current.segments) -> None:
            with store.transaction() as tx:
                apply_segments(tx, segments)

        writer = threading.Thread(target=write)
        writer.start()
        if n + 1 < len(chunks):
            ready = prepare_chunk(store, chunks[n + 1])
        writer.join()
    return len(recs) / (time.perf_counter() - started)


def prepare_cpu(store: SqlStore, recs: list[Delivery], collector: bool) -> float:
    """CPU seconds of preparing one chunk on this thread."""
    if not collector:
        gc.disable()
    try:
        started = time.thread_time()
        prepare_chunk(store, recs[:CHUNK])
        return time.thread_time() - started
    finally:
        gc.enable()


def setting(name: str) -> None:
    sys.setswitchinterval(0.0005 if name == "switch" else 0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = ("frozen", "gc-off", "switch")
    best = dict.fromkeys(names, 0.0)
    cpu = {True: 1e9, False: 1e9}
    url, db = pg_database("bench_interp")
    store = SqlStore(url)
    store.migrate()
    try:
        version = 1
        pipeline(store, records(args.count, version))  # the inserts, untimed
        plain = store.prepare_versions

        def gc_off(resources: Any) -> Any:
            gc.disable()
            try:
                return plain(resources)
            finally:
                gc.enable()
        gc.collect()
        gc.freeze()
        chosen = {"gc-off": gc_off}
        for _ in range(args.rounds):
            for name in names:
                version += 1  # every round writes new versions of the same resources
                recs = records(args.count, version)
                setting(name)
                store.prepare_versions = chosen.get(name, plain)  # type: ignore[method-assign]
                best[name] = max(best[name], pipeline(store, recs))
            for collector in (True, False):
                for _ in range(5):
                    cpu[collector] = min(cpu[collector], prepare_cpu(store, recs, collector))
    finally:
        setting("frozen")
        store.close()
        drop_pg(db)
    print(f"projector pipeline, PostgreSQL hub, {args.count} Observations, chunks of {CHUNK},"
          f" best of {args.rounds}:")
    for name in names:
        print(f"  {name:8} {best[name]:8,.0f} resources/s  ({best[name] / best['frozen']:.0%})")
    print(f"preparing one chunk: {cpu[True] * 1000:.0f} ms CPU with the collector (frozen heap),"
          f" {cpu[False] * 1000:.0f} ms without")


if __name__ == "__main__":
    main()

"""Store-level search timings (no HTTP): load N Observations for 1,000 subjects with
``bulk_put``, then time the two benchmark searches and a date-sorted one.

    .venv/bin/python bench/store.py sqlite:///var/bench-store.db 100000
    .venv/bin/python bench/store.py postgresql://postgres@127.0.0.1:5432/<fresh db> 1000000

Prints bulk load rate and p50/p95 in ms per query. The database is left in place.
"""

from __future__ import annotations

import random
import sys
import time

from sqlalchemy import func, select

from gateway.store import schema
from gateway.store.sql import SqlStore

CODES = [f"{1000 + i}-{i % 10}" for i in range(20)]
STUDY = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"


def observation(i: int, rng: random.Random) -> dict[str, object]:
    return {
        "resourceType": "Observation", "id": f"obs-{i:07d}", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": CODES[i % 20]}]},
        "subject": {"reference": f"Patient/pat-{i % 1000:04d}"},
        "effectiveDateTime": f"20{23 + i % 3}-{1 + i % 12:02d}-{1 + i % 28:02d}T"
                             f"{i % 24:02d}:00:00+01:00",
        "valueQuantity": {"value": round(rng.random() * 100, 2), "unit": "g/dL",
                          "system": "http://unitsofmeasure.org", "code": "g/dL"},
        "extension": [{"url": STUDY, "valueReference": {"reference": "ResearchStudy/s1"}}],
    }


def load(store: SqlStore, n: int) -> None:
    with store.engine.connect() as conn:
        have = conn.execute(select(func.count()).select_from(schema.resource)).scalar_one()
    if have >= n:
        return
    rng = random.Random(1)
    start = time.perf_counter()
    for offset in range(have, n, 10_000):
        store.bulk_put([observation(i, rng) for i in range(offset, min(n, offset + 10_000))])
    elapsed = time.perf_counter() - start
    print(f"bulk_put {n - have} in {elapsed:.1f} s = {(n - have) / elapsed:.0f}/s")
    store.optimize()


def timed(store: SqlStore, params: list[tuple[str, str]], reps: int = 50) -> str:
    times = []
    for k in range(reps):
        subject = (k * 37) % 1000
        query = [(name, value.format(s=f"{subject:04d}", c=CODES[subject % 20]))
                 for name, value in params]
        start = time.perf_counter()
        store.search("Observation", query)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return f"p50 {times[reps // 2]:.1f} ms, p95 {times[int(reps * 0.95)]:.1f} ms"


def main() -> None:
    url, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    store = SqlStore(url)
    store.migrate()
    load(store, n)
    code = ("code", "http://loinc.org|{c}")
    print("subject&code      ", timed(store, [("subject", "Patient/pat-{s}"), code]))
    print("code&date         ", timed(store, [code, ("date", "ge2025-06-01"), ("_count", "100")]))
    print("code&date -date   ", timed(store, [code, ("date", "ge2025-06-01"), ("_count", "100"),
                                              ("_sort", "-date")]))
    store.close()


if __name__ == "__main__":
    main()

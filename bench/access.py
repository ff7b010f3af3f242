"""What per-study access costs the store: reads and searches with and without a
restriction, in process (no HTTP), on the data of bench/api.py plus two studies.

Loads N Observations (all tagged ResearchStudy/s1, as a CTI message tags them) about
``--subjects`` patients; half of the patients are enrolled in s1, the other half in s2.
A client restricted to s1 sees every Observation and half of the patients; one
restricted to s2 sees no Observation. The unrestricted calls run exactly the SQL of a
store without access control.

    .venv/bin/python bench/access.py --db sqlite --n 100000
    .venv/bin/python bench/access.py --db postgresql --n 100000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from api import load  # noqa: E402 - bench/api.py
from scratch import drop_pg, pg_database  # noqa: E402 - bench/scratch.py

from gateway.security.access import Restriction  # noqa: E402


def studies(url: str, subjects: int) -> None:
    from gateway.store.sql import SqlStore

    store = SqlStore(url)
    rows: list[dict[str, Any]] = [
        {"resourceType": "ResearchStudy", "id": sid, "status": "active"} for sid in ("s1", "s2")]
    rows += [{"resourceType": "ResearchSubject", "id": f"rs-{k}", "status": "on-study",
              "study": {"reference": f"ResearchStudy/s{1 + k % 2}"},
              "individual": {"reference": f"Patient/pt-{k}"}} for k in range(subjects)]
    store.bulk_put(rows)
    store.optimize()
    store.close()


def timed(fn: Callable[[], Any], seconds: float) -> float:
    """Median µs per call over ``seconds``."""
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def measure(url: str, n: int, seconds: float) -> None:
    from gateway.store.sql import SqlStore

    store = SqlStore(url)
    rng = random.Random(7)  # noqa: S311 - benchmark
    s1 = Restriction(studies=frozenset({"s1"}))
    s2 = Restriction(studies=frozenset({"s2"}))
    cases: list[tuple[str, Callable[[Restriction | None], Any]]] = [
        ("read Observation by id", lambda r: store.read(
            "Observation", f"obs-{rng.randrange(n)}", restrict=r)),
        ("read Patient by id", lambda r: store.read(
            "Patient", f"pt-{rng.randrange(100)}", restrict=r)),
        ("Observation?code=718-7&_count=50", lambda r: store.search(
            "Observation", [("code", "718-7"), ("_count", "50")], restrict=r)),
        ("Observation?subject=…&_sort=-date", lambda r: store.search(
            "Observation", [("subject", f"Patient/pt-{rng.randrange(100)}"),
                            ("_sort", "-date")], restrict=r)),
        ("Observation?_count=50", lambda r: store.search(
            "Observation", [("_count", "50")], restrict=r)),
        ("Patient?_count=50", lambda r: store.search(
            "Patient", [("_count", "50")], restrict=r)),
        ("Observation?code=718-7&_summary=count", lambda r: store.search(
            "Observation", [("code", "718-7"), ("_summary", "count")], restrict=r)),
    ]
    print(f"{'':40} {'none':>10} {'s1':>10} {'s2':>10}   (median µs per call)")
    for name, case in cases:
        results = [timed(partial(case, r), seconds) for r in (None, s1, s2)]
        print(f"{name:40} " + " ".join(f"{v:10.0f}" for v in results))
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url, name = (f"sqlite:///{Path(tmp) / 'bench.db'}", None) if args.db == "sqlite" \
            else pg_database("access")
        try:
            load(url, args.n, args.subjects)
            studies(url, args.subjects)
            print(f"{args.db}, {args.n} Observations, {args.subjects} patients")
            measure(url, args.n, args.seconds)
        finally:
            if name is not None:
                drop_pg(name)


if __name__ == "__main__":
    main()

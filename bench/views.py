"""SQL-on-FHIR view throughput and memory: N Observations (as bench/export.py loads them)
through a ViewDefinition, on SQLite or PostgreSQL.

    .venv/bin/python bench/views.py --db sqlite --n 100000
    .venv/bin/python bench/views.py --db postgresql --n 100000
    .venv/bin/python bench/views.py --db sqlite --n 100000 --view docs/views/release-results.json

Three measurements of the same view (default: a 6-column view of every Observation):

* engine: the view over the resources already parsed in memory (FHIRPath only), with
  fhirpathpy alone (``compile_view(fast=False)``, the engine before the compiled paths)
  and with the compiled paths;
* store: the store's keyset pages → rows → CSV bytes, as ``$viewdefinition-run`` streams
  them (no HTTP), the same two ways (``--no-before``: the compiled paths only);
* http: ``POST /fhir/$viewdefinition-run`` (CSV) to a real uvicorn server on loopback,
  the body read as it streams.

Each prints rows/s and the RSS at the start, its peak (sampled every 20 ms) and the end.
``--profile N``: instead, cProfile of store → rows → CSV over the first N resources, both
ways, the top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.export import Peak, load, rss_mb  # noqa: E402
from bench.scratch import drop_pg, pg_database  # noqa: E402
from gateway.api.fhir import install_fhir_errors  # noqa: E402
from gateway.api.fhir.validation import resource_types  # noqa: E402
from gateway.api.fhir.views import views_router  # noqa: E402
from gateway.store import SqlStore, view_resources  # noqa: E402
from gateway.views.definition import compile_view  # noqa: E402
from gateway.views.engine import row_batches  # noqa: E402
from gateway.views.output import encode  # noqa: E402

VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition", "resource": "Observation", "status": "active",
    "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"},
        {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
        {"name": "study", "path": "extension('http://hl7.org/fhir/StructureDefinition/"
                                  "workflow-researchStudy').value.ofType(Reference)"
                                  ".getReferenceKey(ResearchStudy)"},
        {"name": "code", "path": "code.coding.first().code"},
        {"name": "value", "path": "value.ofType(Quantity).value"},
        {"name": "effective", "path": "effective.ofType(dateTime)"}]}]}


def measured(label: str, work: Callable[[], int]) -> None:
    start_rss, sampler = rss_mb(), Peak()
    sampler.start()
    start = time.perf_counter()
    rows = work()
    elapsed = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    print(f"{label}: {rows} rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s; RSS MB "
          f"start {start_rss:.0f}, peak {sampler.peak:.0f}, end {rss_mb():.0f}")


def engine_only(store: SqlStore, view: dict[str, Any], fast: bool) -> None:
    compiled = compile_view(view, resource_types(), fast=fast)
    sample = [r for page in view_resources(store, compiled.resource) for r in page][:20_000]
    measured(f"engine, {WAYS[fast]} ({len(sample)} resources in memory)",
             lambda: sum(len(b) for b in row_batches(compiled, [sample])))


WAYS = {False: "fhirpathpy only", True: "compiled paths"}


def through_store(store: SqlStore, view: dict[str, Any], fast: bool) -> None:
    compiled = compile_view(view, resource_types(), fast=fast)

    def work() -> int:
        batches = list_counting(row_batches(compiled, view_resources(store, compiled.resource)))
        size = sum(len(chunk) for chunk in encode("csv", compiled.names, batches.iterate()))
        print(f"  ({size / 2**20:.0f} MB CSV)")
        return batches.rows

    measured(f"store → rows → CSV, {WAYS[fast]}", work)


class list_counting:  # noqa: N801 (reads as a function at the call site)
    """Passes batches through, counting their rows."""

    def __init__(self, batches: Any) -> None:
        self.batches, self.rows = batches, 0

    def iterate(self) -> Any:
        for batch in self.batches:
            self.rows += len(batch)
            yield batch


def over_http(store: SqlStore, view: dict[str, Any]) -> None:
    app = FastAPI()
    app.include_router(views_router(store))
    install_fhir_errors(app)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "viewResource", "resource": view}, {"name": "_format", "valueCode": "csv"}]}

    def work() -> int:
        lines = 0
        with httpx.Client(timeout=600) as http, http.stream(
                "POST", f"http://127.0.0.1:{port}/fhir/$viewdefinition-run",
                content=orjson.dumps(body),
                headers={"Content-Type": "application/fhir+json"}) as answer:
            assert answer.status_code == 200, answer.read()
            for chunk in answer.iter_bytes():
                lines += chunk.count(b"\n")
        return lines - 1  # the header line

    try:
        measured("HTTP POST $viewdefinition-run (CSV)", work)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def profiled(store: SqlStore, view: dict[str, Any], n: int) -> None:
    for fast in (False, True):
        compiled = compile_view(view, resource_types(), fast=fast)

        def work(compiled: Any = compiled) -> None:
            pages = view_resources(store, compiled.resource, page=min(n, 1000))
            first = (page for _, page in zip(range(max(1, n // 1000)), pages, strict=False))
            for _ in encode("csv", compiled.names, row_batches(compiled, first)):
                pass

        profile = cProfile.Profile()
        profile.runcall(work)
        print(f"--- store → rows → CSV, {WAYS[fast]}: top 12 by own time")
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--view", type=Path, help="a ViewDefinition JSON file")
    parser.add_argument("--profile", type=int, metavar="N",
                        help="cProfile store → rows → CSV over N resources instead")
    parser.add_argument("--no-before", action="store_true",
                        help="skip the fhirpathpy-only measurements")
    args = parser.parse_args()
    view = orjson.loads(args.view.read_bytes()) if args.view else VIEW
    folder = Path(tempfile.mkdtemp(prefix="bench-views-"))
    name = None
    if args.db == "sqlite":
        url = f"sqlite:///{folder / 'gateway.db'}"
    else:
        url, name = pg_database("bench_views")
    store = SqlStore(url)
    try:
        store.migrate()
        load(store, args.n)
        if args.profile:
            profiled(store, view, args.profile)
            return
        ways = (True,) if args.no_before else (False, True)
        for fast in ways:
            engine_only(store, view, fast)
        for fast in ways:
            through_store(store, view, fast)
        over_http(store, view)
    finally:
        store.close()
        if name:
            drop_pg(name)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

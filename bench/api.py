"""FHIR API benchmark: read by id and two Observation searches against a bare endpoint.

Loads N Observations (LOINC codes, 1,000 subjects, two years of dates, valueQuantity)
through the store's bulk path, starts the real server (uvicorn, one process) in a
subprocess, and drives it from a separate load-generator process (asyncio, keep-alive
HTTP/1.1 connections). Every scenario is measured in the same run as a bare FastAPI
endpoint returning pre-serialised bytes (the ceiling of this server stack).

    .venv/bin/python bench/api.py --db sqlite --n 100000
    .venv/bin/python bench/api.py --db postgresql --n 100000
    .venv/bin/python bench/api.py --auth       # also: read by id with a bearer token
    .venv/bin/python bench/api.py --auth --audit   # … with the token and the audit trail
    .venv/bin/python bench/api.py --audit      # read by id, audit off then on (alternating)

Targets: read ≥ 60 % of the bare ceiling (req/s); both searches p95 ≤ 25 ms at 100k;
with ``--auth``, read with a token ≥ 80 % of read without (a second server with the
authentication middleware and a registered client, measured in alternation with the first);
with ``--audit``, read-by-id with the audit trail recording ≥ 80 % of read without.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scratch import drop_pg, pg_database  # noqa: E402 - bench/scratch.py

LOINC = [("718-7", "g/dL", 13.5), ("6690-2", "10*3/uL", 7.0), ("777-3", "10*3/uL", 250.0),
         ("789-8", "10*6/uL", 4.8), ("4544-3", "%", 42.0), ("2345-7", "mg/dL", 95.0),
         ("2160-0", "mg/dL", 0.9), ("1742-6", "U/L", 30.0), ("1920-8", "U/L", 28.0),
         ("2951-2", "mmol/L", 140.0), ("2823-3", "mmol/L", 4.2), ("17861-6", "mg/dL", 9.4),
         ("1975-2", "mg/dL", 0.8), ("2532-0", "U/L", 180.0), ("3094-0", "mg/dL", 14.0),
         ("26499-4", "10*3/uL", 4.0), ("731-0", "10*3/uL", 2.0), ("742-7", "10*3/uL", 0.5),
         ("1988-5", "mg/L", 3.0), ("2276-4", "ng/mL", 150.0)]
STUDY_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"


# -- data --------------------------------------------------------------------------------

def observation(i: int, subjects: int, rng: random.Random) -> dict[str, Any]:
    code, unit, mean = LOINC[i % len(LOINC)]
    day = rng.randrange(730)
    when = f"{2024 + day // 365}-{(day % 365) // 31 % 12 + 1:02d}-{(day % 28) + 1:02d}"
    return {
        "resourceType": "Observation", "id": f"obs-{i}", "status": "final",
        "extension": [{"url": STUDY_EXT, "valueReference": {"reference": "ResearchStudy/s1"}}],
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                  "observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/pt-{(i // len(LOINC)) % subjects}"},
        "effectiveDateTime": f"{when}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
        "issued": f"{when}T23:00:00Z",
        "valueQuantity": {"value": round(mean * rng.uniform(0.6, 1.4), 2), "unit": unit,
                          "system": "http://unitsofmeasure.org", "code": unit},
    }


def load(url: str, n: int, subjects: int) -> float:
    from gateway.store.sql import SqlStore

    store = SqlStore(url)
    store.migrate()
    rng = random.Random(42)  # noqa: S311 - benchmark data
    start = time.perf_counter()
    patients = [{"resourceType": "Patient", "id": f"pt-{k}"} for k in range(subjects)]
    store.bulk_put(patients)
    batch = 10_000
    for offset in range(0, n, batch):
        store.bulk_put([observation(i, subjects, rng)
                        for i in range(offset, min(n, offset + batch))])
        print(f"  loaded {min(n, offset + batch):>8} observations", file=sys.stderr)
    elapsed = time.perf_counter() - start
    store.optimize()  # planner statistics, as autovacuum would gather them
    store.close()
    return elapsed


def database(kind: str, workdir: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", None
    return pg_database()


# -- server (subprocess) -----------------------------------------------------------------

def serve(url: str, port: int, auth_dir: str | None = None, audit: bool = False) -> None:
    import orjson
    import uvicorn
    from fastapi import FastAPI
    from starlette.responses import Response

    from gateway.api.fhir import fhir_router, install_fhir_errors
    from gateway.fhir import FHIR_MEDIA_TYPE
    from gateway.store.sql import SqlStore

    store = SqlStore(url)
    app = FastAPI()
    app.include_router(fhir_router(store))
    install_fhir_errors(app)
    bare = orjson.dumps(observation(1, 1000, random.Random(1)))  # noqa: S311

    @app.get("/bare")
    async def bare_endpoint() -> Response:
        return Response(bare, media_type=FHIR_MEDIA_TYPE)

    if auth_dir:  # the trust boundary as `gateway serve --clients` installs it
        from gateway.security.clients import load_clients
        from gateway.security.keys import signing_key
        from gateway.security.middleware import AuthMiddleware
        from gateway.security.routes import auth_router
        from gateway.security.tokens import TokenService

        tokens = TokenService(load_clients(Path(auth_dir) / "clients.yaml"),
                              signing_key(Path(auth_dir)))
        app.include_router(auth_router(tokens))
        app.add_middleware(AuthMiddleware, tokens=tokens)
    trail = None
    if audit:  # as gateway.runtime wires it: the router, the middleware outermost
        from gateway.audit import AuditTrail, audit_router, install_audit
        from gateway.store.audit import AuditLog

        trail = AuditTrail(AuditLog(store), node="bench", key=b"b" * 32, limit=10**9)
        trail.start()
        app.router.routes[:0] = audit_router(AuditLog(store)).routes
        install_audit(app, trail)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    if trail is not None:
        trail.stop()


def auth_setup(workdir: Path) -> Any:
    """A registered client (its key and the clients file) for the ``--auth`` server."""
    from gateway.security import keys
    from gateway.security.clients import add_client

    key = keys.generate("ES384")
    add_client(workdir / "clients.yaml", {"id": "bench", "name": "bench", "scopes":
                                          ["system/Observation.rs"],
                                          "jwks": {"keys": [keys.public_jwk(key)]}})
    return key


def auth_token(port: int, key: Any) -> str:
    import httpx

    from gateway.cli.clients import client_assertion
    from gateway.security.tokens import ASSERTION_TYPE

    url = f"http://127.0.0.1:{port}/auth/token"
    answer = httpx.post(url, data={"grant_type": "client_credentials",
                                   "client_assertion_type": ASSERTION_TYPE,
                                   "client_assertion": client_assertion("bench", key, url),
                                   "scope": "system/Observation.rs"})
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


# -- load generator (subprocess) ---------------------------------------------------------

HEADERS = ""  # extra request header lines ("Authorization: Bearer …\r\n"), from --header


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   path: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: application/fhir+json"
                 f"\r\n{HEADERS}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _worker(port: int, paths: list[str], until: float, latencies: list[float],
                  errors: list[int], rng: random.Random) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.perf_counter() < until:
        path = paths[rng.randrange(len(paths))]
        start = time.perf_counter()
        status = await _request(reader, writer, path)
        latencies.append(time.perf_counter() - start)
        if status != 200:
            errors.append(status)
    writer.close()


async def _drive(port: int, paths: list[str], concurrency: int, seconds: float
                 ) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    warm_until = time.perf_counter() + min(1.0, seconds / 5)
    await asyncio.gather(*(_worker(port, paths, warm_until, [], [], random.Random(k))  # noqa: S311
                           for k in range(concurrency)))
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(_worker(port, paths, until, latencies, errors,
                                   random.Random(100 + k))  # noqa: S311
                           for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50_ms": pct(0.50),
            "p95_ms": pct(0.95), "p99_ms": pct(0.99), "errors": len(errors),
            "error_statuses": sorted(set(errors))[:5]}


def drive(port: int, paths: list[str], concurrency: int, seconds: float,
          header: str = "") -> dict[str, Any]:
    """Run the load generator in its own process; returns its measurements."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(paths, handle)
    out = subprocess.run([sys.executable, __file__, "load", "--port", str(port),
                          "--paths", handle.name, "--concurrency", str(concurrency),
                          "--seconds", str(seconds), "--header", header], check=True,
                         capture_output=True, text=True)
    os.unlink(handle.name)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# -- orchestration -----------------------------------------------------------------------

def scenarios(n: int, subjects: int) -> dict[str, list[str]]:
    rng = random.Random(7)  # noqa: S311
    codes = [c for c, _, _ in LOINC]
    return {
        "bare": ["/bare"],
        "read": [f"/fhir/Observation/obs-{rng.randrange(n)}" for _ in range(5000)],
        "search subject+code": [
            f"/fhir/Observation?subject=Patient/pt-{rng.randrange(subjects)}"
            f"&code=http://loinc.org|{rng.choice(codes)}" for _ in range(2000)],
        "search code+date _count=100": [
            f"/fhir/Observation?code=http://loinc.org|{rng.choice(codes)}"
            f"&date=ge2025-{rng.randrange(1, 13):02d}-01&_count=100" for _ in range(2000)],
    }


def measure(port: int, paths: dict[str, list[str]], conc: dict[str, int],
            args: argparse.Namespace, auth: tuple[int, str] | None = None
            ) -> dict[str, dict[str, Any]]:
    """Bare, read (and read with a token on the ``auth`` server: port, token) alternate for
    ``--rounds`` rounds (the best round of each is kept: on a shared machine the noise only
    ever slows a round down); then the searches."""
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.rounds):
        for name in ("bare", "read", *(["read with token"] if auth else [])):
            if name == "read with token" and auth is not None:
                run = drive(auth[0], paths["read"], conc["read"], args.seconds,
                            f"Authorization: Bearer {auth[1]}\r\n")
            else:
                run = drive(port, paths[name], conc[name], args.seconds)
            if name not in results or run["rps"] > results[name]["rps"]:
                results[name] = run
    for name in ("search subject+code", "search code+date _count=100"):
        results[name] = drive(port, paths[name], conc[name], args.seconds * args.rounds)
    return results


def report(db: str, n: int, load_s: float, results: dict[str, dict[str, Any]],
           concurrency: dict[str, int]) -> None:
    print(f"\nFHIR API benchmark — {db}, {n:,} Observations (bulk load {load_s:.1f} s)")
    print(f"{'scenario':<30}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}")
    for name, r in results.items():
        print(f"{name:<30}{concurrency[name]:>5}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}"
              f"{r['p95_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>8}")
    ratio = results["read"]["rps"] / results["bare"]["rps"]
    print(f"\nread / bare ceiling: {ratio:.0%} (target ≥ 60%)")
    if "read with token" in results:
        ratio = results["read with token"]["rps"] / results["read"]["rps"]
        print(f"read with token / read without: {ratio:.0%} (target ≥ 80%)")
    for name in ("search subject+code", "search code+date _count=100"):
        p95 = results[name]["p95_ms"]
        verdict = "ok" if p95 <= 25 else "MISSED"
        print(f"{name}: p95 {p95:.1f} ms (target ≤ 25 ms) {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16, help="for bare and read")
    ap.add_argument("--search-concurrency", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--auth", action="store_true",
                    help="also read by id with a bearer token (authentication middleware)")
    ap.add_argument("--audit", action="store_true",
                    help="with --auth: the token server records the audit trail too; alone: "
                         "read by id with the audit trail off, then on")
    s = sub.add_parser("serve")
    s.add_argument("--url", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--auth-dir", help="serve with authentication (clients file, key here)")
    s.add_argument("--audit", action="store_true")
    g = sub.add_parser("load")
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--paths", required=True)
    g.add_argument("--concurrency", type=int, required=True)
    g.add_argument("--seconds", type=float, required=True)
    g.add_argument("--header", default="")
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args.url, args.port, args.auth_dir, args.audit)
    elif args.cmd == "load":
        global HEADERS
        HEADERS = args.header
        paths = json.loads(Path(args.paths).read_text())
        print(json.dumps(asyncio.run(_drive(args.port, paths, args.concurrency,
                                            args.seconds))))
    else:
        run(args)


def start_server(url: str, audit: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "serve", "--url", url,
                               "--port", str(port), *(["--audit"] if audit else [])])
    wait_ready(port)
    return server, port


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time of a process (or one of its threads) so far (Linux /proc)."""
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def other_threads_cpu(pid: int) -> float:
    """CPU time of a process's threads other than its main one (the event loop's)."""
    return sum(cpu_seconds(pid, int(tid.name)) for tid in Path(f"/proc/{pid}/task").iterdir()
               if int(tid.name) != pid)


def compare_audit(url: str, args: argparse.Namespace) -> None:
    """Read by id on two servers over the same database, audit off and on, measured in
    alternation: the best round of each (noise on a shared machine only slows a round),
    and the server's CPU time per request over all rounds (what the audit trail costs,
    whatever else the machine runs; the writer's work included: it runs in the server
    process)."""
    paths = scenarios(args.n, args.subjects)["read"]
    servers = {audit: start_server(url, audit) for audit in (False, True)}
    best: dict[bool, dict[str, Any]] = {}
    cpu = {False: 0.0, True: 0.0}
    threads = {False: 0.0, True: 0.0}
    served = {False: 0, True: 0}
    try:
        for _ in range(args.rounds):
            for audit, (server, port) in servers.items():
                before = cpu_seconds(server.pid), other_threads_cpu(server.pid)
                run = drive(port, paths, args.concurrency, args.seconds)
                time.sleep(0.3)  # the writer's last round of this run
                cpu[audit] += cpu_seconds(server.pid) - before[0]
                threads[audit] += other_threads_cpu(server.pid) - before[1]
                served[audit] += run["requests"]
                if audit not in best or run["rps"] > best[audit]["rps"]:
                    best[audit] = run
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
    print(f"\nread by id, {args.db}, {args.n:,} Observations, concurrency {args.concurrency}")
    per_request = {audit: cpu[audit] / max(1, served[audit]) * 1e6 for audit in cpu}
    for audit, r in best.items():
        print(f"  audit {'on ' if audit else 'off'}: {r['rps']:>7.0f} req/s  p50 "
              f"{r['p50_ms']:.2f} ms  p95 {r['p95_ms']:.2f} ms  errors {r['errors']}  "
              f"server CPU {per_request[audit]:.0f} µs/request (threads other than the "
              f"event loop's {threads[audit] / max(1, served[audit]) * 1e6:.0f})")
    ratio = best[True]["rps"] / best[False]["rps"]
    cpu_ratio = per_request[False] / per_request[True]
    print(f"audit on / off: {ratio:.0%} of the req/s (best rounds); {cpu_ratio:.0%} by server "
          "CPU per request (target ≥ 80%)")


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url, pg_name = database(args.db, Path(tmp))
        try:
            load_s = load(url, args.n, args.subjects)
            if args.audit and not args.auth:
                compare_audit(url, args)
                return
            port = free_port()
            servers = [subprocess.Popen([sys.executable, __file__, "serve", "--url", url,
                                         "--port", str(port)])]
            auth = None
            try:
                wait_ready(port)
                if args.auth:
                    key, auth_port = auth_setup(Path(tmp)), free_port()
                    servers.append(subprocess.Popen([
                        sys.executable, __file__, "serve", "--url", url, "--port",
                        str(auth_port), "--auth-dir", tmp, *(["--audit"] if args.audit else [])]))
                    wait_ready(auth_port)
                    auth = (auth_port, auth_token(auth_port, key))
                conc = {"bare": args.concurrency, "read": args.concurrency,
                        "read with token": args.concurrency,
                        "search subject+code": args.search_concurrency,
                        "search code+date _count=100": args.search_concurrency}
                results = measure(port, scenarios(args.n, args.subjects), conc, args, auth)
            finally:
                for server in servers:
                    server.terminate()
                    server.wait(timeout=30)
            report(args.db, args.n, load_s, results, conc)
        finally:
            if pg_name:
                drop_pg(pg_name)


if __name__ == "__main__":
    main()

"""``gateway import FILE… --site ID``: import lab-export files (network CSV, or one of the
site's CSV/TSV/XLSX layouts). Prints the import report (JSON).

By default the files go to the RUNNING gateway (``POST /lab-exports``; ``--url``, else its
``gateway.pid``, else the local HTTP port), which relays what they make at once.
``--data-dir``/``--database-url`` import offline into that existing store (with a progress
bar on a terminal); a new database or pseudonym key is only created with ``--init``.

Exit 0: every row accepted; 1: some rows rejected; 2: a file could not be read, the site is
unknown, or no gateway answered."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from gateway.adapters.labexport import import_export
from gateway.adapters.loader import load_network
from gateway.cli import remote
from gateway.errors import ConfigError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("import", help="import lab-export files (CSV/TSV/XLSX)",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--site", required=True, help="the site the files come from")
    parser.add_argument("--layout", default=None,
                        help="a lab_exports name of the site (default: from the header)")
    parser.add_argument("--report", choices=["json", "outcome"], default="json")
    remote.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_offline(args) if remote.offline(args) else run_remote(args)


def run_remote(args: argparse.Namespace) -> int:
    url = remote.base_url(args)
    worst = 0
    try:
        with remote.client(args) as http:
            for path in args.files:
                worst = max(worst, _send(http, path, args))
    except httpx.HTTPError as exc:
        sys.stderr.write(f"gateway import: {remote.unreachable(url, exc)}\n")
        return 2
    return worst


def _send(http: httpx.Client, path: Path, args: argparse.Namespace) -> int:
    try:
        data = path.read_bytes()
    except OSError as exc:
        sys.stderr.write(f"gateway import: {path}: {exc.strerror}\n")
        return 2
    params = {"site": args.site, **({"layout": args.layout} if args.layout else {})}
    headers = {"Accept": "application/fhir+json"} if args.report == "outcome" else {}
    if path.suffix.lower() == ".xlsx":
        response = http.post("/lab-exports", params=params, headers=headers,
                             files={"file": (path.name, data)})
    else:
        response = http.post("/lab-exports", params=params, content=data,
                             headers={**headers, "Content-Type": "text/csv",
                                      "X-Filename": path.name})
    body = remote.answer(response)
    sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    if response.status_code == 200:
        return 0
    if response.status_code == 422 and not body.get("error") and body.get("rejected"):
        return 1
    return 2


def run_offline(args: argparse.Namespace) -> int:
    from gateway.store.sql import SqlStore

    try:
        found = remote.local(args)
        settings, key = found.settings, found.key
        network = load_network(settings.sites)
    except ConfigError as exc:
        sys.stderr.write(f"gateway import: {exc.message}\n")
        return 2
    if args.site not in network.sites:
        sys.stderr.write(f"gateway import: no site {args.site!r} in {settings.sites}\n")
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore(settings.resolved_database_url(), edge=None)
    try:
        store.migrate()
        return max(_one(store, network, key, path, args) for path in args.files)
    finally:
        store.close()


def _one(store: Any, network: Any, key: bytes, path: Path, args: argparse.Namespace) -> int:
    try:
        data = path.read_bytes()
    except OSError as exc:
        sys.stderr.write(f"gateway import: {path}: {exc.strerror}\n")
        return 2
    bar = tqdm(desc=path.name, unit="row", disable=not sys.stderr.isatty(), file=sys.stderr)

    def on_rows(total: int) -> None:
        bar.total = total
        bar.refresh()

    try:
        report = import_export(store, network, args.site, data, path.name, key,
                               layout=args.layout, progress=bar.update, on_rows=on_rows)
    finally:
        bar.close()
    body = report.to_outcome() if args.report == "outcome" else report.to_json()
    sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    sys.stderr.write(report.summary() + "\n")
    return 2 if report.error else (1 if report.rejected else 0)

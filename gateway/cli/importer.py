"""``gateway import FILE… --site ID``: import lab-export files (network CSV, or one of the
site's CSV/TSV/XLSX layouts) into the gateway's store, with a progress bar on a terminal.
Prints the import report (JSON). Exit 0: every row accepted; 1: some rows rejected;
2: a file could not be read or the site is unknown."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gateway.adapters.labexport import import_export
from gateway.adapters.loader import load_network
from gateway.config import Settings, add_arguments, settings_from
from gateway.errors import ConfigError
from gateway.mapping.pseudonym import load_or_create_key, read_key


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("import", help="import lab-export files (CSV/TSV/XLSX)",
                                   description=__doc__)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--site", required=True, help="the site the files come from")
    parser.add_argument("--layout", default=None,
                        help="a lab_exports name of the site (default: from the header)")
    parser.add_argument("--report", choices=["json", "outcome"], default="json")
    add_arguments(parser)
    parser.set_defaults(func=run)


def pseudonym_key(settings: Settings) -> bytes:
    if settings.pseudonym_key_file:
        return read_key(settings.pseudonym_key_file)
    return load_or_create_key(settings.data_dir)


def run(args: argparse.Namespace) -> int:
    from gateway.store.sql import SqlStore

    settings = settings_from(args)
    try:
        network = load_network(settings.sites)
        key = pseudonym_key(settings)
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

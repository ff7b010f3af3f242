"""``gateway replay``: re-map stored raw messages with the current mapping and site files.

Typical use: a site's code map was fixed, and the messages that failed (AE, status
``error``) must now go through. ``--status all`` re-maps every stored message, e.g. after a
mapping improvement. Only resources whose content changed get a new version and an outbox
row (the store guarantees it), so the bus carries exactly the differences; a running gateway
relays them within a second, otherwise the next ``gateway serve`` does.

By default the running gateway replays (``POST /admin/replay``; ``--url``, else its
``gateway.pid``, else the local HTTP port). ``--data-dir``/``--database-url`` replay offline
on that existing store, with the site files of ``--sites``. Results that an earlier mapping
wrote under ids the current one no longer produces are deleted ("retired"): after a code-map
change or an upgrade, ``--status all`` leaves one current resource per result.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.cli import remote
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

STATUSES = {"error": "error", "rejected": "rejected", "all": None}


@dataclass
class ReplaySummary:
    remapped: int = 0
    changed: int = 0  # resources that got a new version
    retired: int = 0  # results deleted: ids an earlier mapping wrote and this one does not
    errors: int = 0  # messages that still fail
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, status: str, changed: int, retired: int = 0) -> None:
        self.remapped += 1
        self.changed += changed
        self.retired += retired
        self.errors += status in ("error", "rejected")
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def text(self) -> str:
        return (f"messages re-mapped: {self.remapped}\n"
                f"resources changed: {self.changed}\n"
                f"results retired: {self.retired}\n"
                f"errors: {self.errors}\n")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "replay", help="re-map stored messages with the current mapping and site files",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", help="only messages received at or after this instant "
                        "(ISO 8601, e.g. 2026-11-01 or 2026-11-01T08:00:00Z)")
    parser.add_argument("--site", help="only this site id")
    parser.add_argument("--status", choices=sorted(STATUSES), default="error",
                        help="which stored messages: error (default), rejected, or all")
    remote.add_arguments(parser)
    parser.set_defaults(func=run)


def replay(service: Any, records: Iterable[Any], *, progress: bool) -> ReplaySummary:
    """Re-map every record through ``service.replay``; a tqdm bar when ``progress``."""
    from tqdm import tqdm

    summary = ReplaySummary()
    for record in tqdm(records, unit="msg", disable=not progress, file=sys.stderr):
        outcome = service.replay(record)
        summary.add(outcome.status, outcome.changed, outcome.retired)
    return summary


def run(args: argparse.Namespace) -> int:
    return run_offline(args) if remote.offline(args) else run_remote(args)


def run_remote(args: argparse.Namespace) -> int:
    url = remote.base_url(args)
    params = {k: v for k, v in (("status", args.status), ("site", args.site),
                                ("since", args.since)) if v}
    try:
        with remote.client(args) as http:
            response = http.post("/admin/replay", params=params)
    except httpx.HTTPError as exc:
        log.error("cannot replay: %s", remote.unreachable(url, exc))
        return 2
    body = remote.answer(response)
    if response.status_code != 200:
        log.error("cannot replay: %s answered %d: %s", url, response.status_code,
                  body.get("detail", body))
        return 2
    summary = ReplaySummary(body["remapped"], body["changed"], body["retired"],
                            body["errors"], body["by_status"])
    sys.stdout.write(summary.text())
    return 1 if summary.errors else 0


def run_offline(args: argparse.Namespace) -> int:
    from gateway.adapters.loader import load_network
    from gateway.ingest import IngestService
    from gateway.store.sql import SqlStore

    try:
        found = remote.local(args)
        settings, key = found.settings, found.key
        network = load_network(settings.sites)
    except ConfigError as exc:
        log.error("cannot replay: %s", exc)
        return 2
    store = SqlStore(settings.resolved_database_url(), edge=None)
    try:
        store.migrate()
        service = IngestService(store, network, key, node_id=settings.node_id)
        records = store.inbox_iter(status=STATUSES[args.status], site=args.site,
                                   since=args.since)
        summary = replay(service, records, progress=sys.stderr.isatty())
        sys.stdout.write(summary.text())
        sys.stdout.write(f"outbox rows waiting for the relay: {store.outbox_pending()}\n")
    finally:
        store.close()
    return 1 if summary.errors else 0

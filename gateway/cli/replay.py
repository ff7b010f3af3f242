"""``gateway replay``: re-map stored raw messages with the current mapping and site files.

Typical use: a site's code map was fixed, and the messages that failed (AE, status
``error``) must now go through. ``--status all`` re-maps every stored message, e.g. after a
mapping improvement. Only resources whose content changed get a new version and an outbox
row (the store guarantees it), so the bus carries exactly the differences; a running gateway
relays them within a second, otherwise the next ``gateway serve`` does.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

log = logging.getLogger(__name__)

STATUSES = {"error": "error", "rejected": "rejected", "all": None}


@dataclass
class ReplaySummary:
    remapped: int = 0
    changed: int = 0  # resources that got a new version
    errors: int = 0  # messages that still fail
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, status: str, changed: int) -> None:
        self.remapped += 1
        self.changed += changed
        self.errors += status in ("error", "rejected")
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def text(self) -> str:
        return (f"messages re-mapped: {self.remapped}\n"
                f"resources changed: {self.changed}\n"
                f"errors: {self.errors}\n")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "replay", help="re-map stored messages with the current mapping and site files",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--since", help="only messages received at or after this instant "
                        "(ISO 8601, e.g. 2026-11-01 or 2026-11-01T08:00:00Z)")
    parser.add_argument("--site", help="only this site id")
    parser.add_argument("--status", choices=sorted(STATUSES), default="error",
                        help="which stored messages: error (default), rejected, or all")
    parser.add_argument("--data-dir", dest="data_dir", type=Path, default=None)
    parser.add_argument("--database-url", dest="database_url", default=None)
    parser.add_argument("--sites", type=Path, default=None)
    parser.add_argument("--pseudonym-key-file", dest="pseudonym_key_file", type=Path,
                        default=None)
    parser.set_defaults(func=run)


def replay(service: Any, records: Iterable[Any], *, progress: bool) -> ReplaySummary:
    """Re-map every record through ``service.replay``; a tqdm bar when ``progress``."""
    from tqdm import tqdm

    summary = ReplaySummary()
    for record in tqdm(records, unit="msg", disable=not progress, file=sys.stderr):
        outcome = service.replay(record)
        summary.add(outcome.status, outcome.changed)
    return summary


def run(args: argparse.Namespace) -> int:
    from gateway.adapters.loader import load_network
    from gateway.config import settings_from
    from gateway.ingest import IngestService
    from gateway.mapping.pseudonym import load_or_create_key, read_key
    from gateway.store.sql import SqlStore

    try:
        settings = settings_from(args)
        network = load_network(settings.sites)
        key = (read_key(settings.pseudonym_key_file) if settings.pseudonym_key_file
               else load_or_create_key(settings.data_dir))
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

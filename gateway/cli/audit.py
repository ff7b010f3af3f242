"""``gateway audit verify``: walk the audit trail's hash chain.

Exit 0 and print the head (``seq`` and hash: record it elsewhere, so that a trail whose
newest events were cut off is noticed next time); exit 1 naming the first broken event when
an event was changed, removed or reordered; exit 2 when the database cannot be read.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.store.audit import AuditLog

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("audit", help="the audit trail: verify its hash chain")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="walk the hash chain; exit 1 naming the first "
                                "broken event", description=__doc__.split("\n\n")[1])
    verify.add_argument("--data-dir", dest="data_dir", type=Path, default=None)
    verify.add_argument("--database-url", dest="database_url", default=None)
    verify.add_argument("--expect-head", dest="expect_head", default=None, metavar="SEQ:HASH",
                        help="the head recorded last time: fail unless it is still in the "
                             "chain with this hash")
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from gateway.audit.chain import verify
    from gateway.config import settings_from
    from gateway.store.audit import AuditLog
    from gateway.store.sql import SqlStore

    settings = settings_from(args)
    store = SqlStore(_trail_url(settings), edge=None)
    try:
        store.migrate()
        audit = AuditLog(store)
        start_seq, start_hash = audit.anchor()
        verdict = verify(audit.walk(), start_seq=start_seq, start_hash=start_hash)
        expected = _expected_head(audit, args.expect_head) if verdict.ok else ""
    except GatewayError as exc:
        log.error("cannot read the audit trail: %s", exc)
        return 2
    finally:
        store.close()
    sys.stdout.write(verdict.text() + "\n")
    if expected:
        sys.stdout.write(expected + "\n")
        return 1
    return 0 if verdict.ok else 1


def _trail_url(settings: Settings) -> str:
    """``--database-url`` as given; from a data directory, role all's hub store
    (``gateway-hub.db``, where its trail is kept) when there is one, else ``gateway.db``."""
    from gateway.config import hub_beside

    url = settings.resolved_database_url()
    if settings.database_url:
        return url
    hub = hub_beside(url)
    return hub if Path(hub.removeprefix("sqlite:///")).is_file() else url


def _expected_head(audit: AuditLog, expect: str | None) -> str:
    """'' when the recorded head is still there with its hash, else what is wrong."""
    if not expect:
        return ""
    seq_text, _, digest = expect.partition(":")
    if not seq_text.isdigit() or len(digest) != 64:
        return f"--expect-head {expect!r} is not SEQ:HASH"
    found = audit.hash_of(int(seq_text))
    if found is None:
        return f"event {seq_text}, the recorded head, is gone (the newest events were removed)"
    if found != digest:
        return f"event {seq_text} no longer has the recorded hash (the trail was rewritten)"
    return ""

"""The hash chain of the audit trail, and its verification. Pure.

Event ``n`` (``seq`` 1, 2, 3, … without gaps) stores ``prev_hash`` (the hash of event
``n-1``; 64 zeros for the first) and ``hash = sha256(prev_hash "\\n" seq "\\n" content)``,
where ``content`` is the event's canonical JSON (sorted keys, no whitespace). Changing an
event's content, its sequence number or its place breaks its own hash or its successor's
link; removing an event leaves a gap. ``verify`` walks the rows in ``seq`` order and
names the first event that breaks the chain. The search columns are derived from the
content (``columns``), so that editing one of them is found too.

A trail whose newest events were cut off still verifies: ``verify`` reports the head
(``seq`` and hash), which an operator records elsewhere (a ticket, a log server) and compares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

GENESIS = "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def canonical(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def link_hash(prev_hash: str, seq: int, content: bytes) -> str:
    return hashlib.sha256(b"%s\n%d\n%s" % (prev_hash.encode(), seq, content)).hexdigest()


def _tokens(codings: Iterable[dict[str, Any]]) -> str:
    return "\n" + "".join(f"{c.get('system', '')}|{c.get('code', '')}\n" for c in codings)


def _reference(entity: dict[str, Any]) -> str | None:
    what = entity.get("what")
    if what is None:
        return None
    if "reference" in what:
        return str(what["reference"])
    identifier = what["identifier"]
    return f"{identifier['system'].removeprefix('urn:plagencell:')}/{identifier['value']}"


def columns(event: dict[str, Any]) -> dict[str, Any]:
    """The search columns of one event, derived from its content."""
    refs = [ref for e in event.get("entity", ()) if (ref := _reference(e)) is not None]
    recorded = datetime.fromisoformat(event["recorded"].replace("Z", "+00:00"))
    return {
        "recorded_ms": (recorded - _EPOCH) // timedelta(milliseconds=1),
        "agent": event["agent"][0]["who"]["identifier"]["value"],
        "type": _tokens([event["type"]]),
        "subtype": _tokens(event.get("subtype", ())),
        "action": event["action"],
        "outcome": event["outcome"],
        "entity": "\n" + "".join(f"{ref}\n" for ref in refs),
    }


@dataclass(frozen=True)
class Verdict:
    ok: bool
    events: int  # events checked
    head_seq: int  # the last intact event (0: none)
    head_hash: str
    broken_seq: int | None = None
    reason: str = ""

    def text(self) -> str:
        if self.ok:
            return (f"audit trail intact: {self.events} events; head event {self.head_seq} "
                    f"hash {self.head_hash}")
        return (f"audit trail broken at event {self.broken_seq}: {self.reason} "
                f"({self.events} events before it are intact)")


def verify(rows: Iterable[Any], *, start_seq: int = 1, start_hash: str = GENESIS) -> Verdict:
    """Walk ``rows`` (attributes seq, prev_hash, hash, content and the search columns) in
    ``seq`` order from ``start_seq`` whose predecessor's hash is ``start_hash``."""
    expected, prev, checked = start_seq, start_hash, 0
    for row in rows:
        reason = _broken(row, expected, prev)
        if reason:
            broken = min(row.seq, expected)
            return Verdict(False, checked, expected - 1, prev, broken, reason)
        expected, prev, checked = row.seq + 1, row.hash, checked + 1
    return Verdict(True, checked, expected - 1, prev)


def _broken(row: Any, expected: int, prev: str) -> str:
    if row.seq > expected:
        gone = (f"event {expected} is missing" if row.seq == expected + 1
                else f"events {expected} to {row.seq - 1} are missing")
        return f"{gone} (removed)"
    if row.seq < expected:
        return f"event {row.seq} appears again after event {expected - 1} (reordered)"
    if row.prev_hash != prev:
        return ("its link does not match the hash of the event before it "
                "(events removed, replaced or reordered)")
    if link_hash(prev, row.seq, bytes(row.content)) != row.hash:
        return "its content does not match its hash (changed)"
    try:
        derived = columns(orjson.loads(row.content))
    except (ValueError, KeyError, IndexError, TypeError):
        return "its content is not an AuditEvent of this trail (changed)"
    changed = [name for name, value in derived.items() if getattr(row, name) != value]
    if changed:
        return f"its search columns {', '.join(changed)} do not match its content (changed)"
    return ""

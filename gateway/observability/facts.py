"""The few facts of an inbound message that metrics and log lines may carry, read from its
MSH alone: the site (from MSH-4), the message type (MSH-9, when it looks like one) and
MSH-10 as its keyed hash. Never a value from the message's body."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.mapping.provenance import message_hash

if TYPE_CHECKING:
    from gateway.adapters.loader import Network

# MSH-9 as a label: CODE^EVENT of letters and digits, anything else is "other" (a hostile
# sender must not mint label values)
MESSAGE_TYPE = re.compile(r"^[A-Z]{3}(\^[A-Z0-9]{3})?$")
UNKNOWN_SITE = "unknown"


@dataclass(frozen=True, slots=True)
class MessageFacts:
    site: str  # a configured site id, or "unknown"
    message_type: str  # CODE^EVENT, "batch" or "other"
    digest: str  # the keyed hash of MSH-10 (the bus's message-id, traceparent); "" unasked

    @property
    def msh10(self) -> str:
        """How log lines name the message: 12 hex digits of the keyed hash."""
        return "msh10#" + self.digest[:12]


def msh_fields(raw: bytes) -> list[str]:
    """MSH fields numbered as the standard does (``fields[n]`` is MSH-n), best effort."""
    head = raw[:4096]
    start = head.find(b"MSH")
    if start < 0 or len(head) < start + 4:
        return []
    ends = [i for i in (head.find(b"\r", start), head.find(b"\n", start)) if i >= 0]
    line = head[start:min(ends, default=len(head))].decode("latin-1")
    separator = line[3]
    return ["MSH", separator, *line[4:].split(separator)]


def message_facts(raw: bytes, network: Network, key: bytes, *,
                  hashed: bool = True) -> MessageFacts:
    """``hashed``: compute the keyed hash too (log lines, traces; metrics need none)."""
    fields = msh_fields(raw)

    def field(n: int, component: bool = True) -> str:
        value = fields[n] if n < len(fields) else ""
        return value.split("~", 1)[0].split("^", 1)[0].strip() if component else value

    if raw.lstrip(b"\r\n\x0b").startswith((b"FHS", b"BHS")):
        kind = "batch"
    else:
        trigger = field(9, component=False).split("~", 1)[0].split("^")[:2]
        kind = "^".join(part.strip().upper() for part in trigger)
        kind = kind if MESSAGE_TYPE.match(kind) else "other"
    facility, control_id = field(4), field(10, component=False).split("~", 1)[0].strip()
    site = network.site_for(facility) if facility else None
    digest = message_hash(key, site.id if site else "", facility, control_id) if hashed else ""
    return MessageFacts(site.id if site else UNKNOWN_SITE, kind, digest)

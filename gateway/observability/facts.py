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
    msh10: str  # "msh10#" + 12 hex digits of the keyed hash, as every log line names it
    digest: str  # the whole keyed hash: the bus's message-id and traceparent come from it


def msh_fields(raw: bytes) -> list[str]:
    """MSH fields numbered as the standard does (``fields[n]`` is MSH-n), best effort."""
    text = raw[:4096].decode("latin-1")
    start = text.find("MSH")
    if start < 0 or len(text) < start + 4:
        return []
    line = text[start:].replace("\n", "\r").split("\r", 1)[0]
    separator = line[3]
    return ["MSH", separator, *line[4:].split(separator)]


def message_facts(raw: bytes, network: Network, key: bytes) -> MessageFacts:
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
    digest = message_hash(key, site.id if site else "", facility, control_id)
    return MessageFacts(site.id if site else UNKNOWN_SITE, kind, "msh10#" + digest[:12],
                        digest)

"""HL7 v2 batches (FHS/BHS … BTS/FTS) received as one MLLP frame or one HTTP body.

Each message of the batch is processed on its own (its own inbox record, dedupe key and
acknowledgment); the answer is a batch of the acknowledgments, wrapped in BHS/BTS (and
FHS/FTS when the batch came in a file header), per HL7 v2.5.1 chapter 2 (batch protocol).
Splitting works on bytes, so each message keeps the character set its MSH-18 declares.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Protocol

from gateway.hl7.ack import format_ts

BATCH_HEADERS = (b"FHS", b"BHS")
_BREAKS = re.compile(rb"\r\n|\n|\r")
_TRAILERS = (b"BTS", b"FTS")


def is_batch(raw: bytes) -> bool:
    return raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(BATCH_HEADERS)


def split(raw: bytes) -> tuple[dict[bytes, list[bytes]], list[bytes]]:
    """(header fields by segment id — FHS/BHS, each list of fields with field 1 the
    separator —, the messages as bytes with CR segment separators)."""
    headers: dict[bytes, list[bytes]] = {}
    messages: list[list[bytes]] = []
    for line in _BREAKS.split(raw.lstrip(b"\xef\xbb\xbf")):
        line = line.strip(b" \t")
        head = line[:3]
        if head in BATCH_HEADERS and len(line) > 4:
            sep = line[3:4]
            headers[head] = [head, sep, *line.split(sep)[1:]]
        elif head in _TRAILERS or not line:
            continue
        elif head == b"MSH":
            messages.append([line])
        elif messages:
            messages[-1].append(line)
    return headers, [b"\r".join(m) + b"\r" for m in messages]


def _field(fields: list[bytes], n: int) -> str:
    return fields[n].decode("utf-8", "replace") if n < len(fields) else ""


def _header(name: bytes, fields: list[bytes], timestamp: datetime) -> str:
    """The answering FHS/BHS: sender and receiver swapped, a new control id, the original
    batch's control id as reference (FHS-12/BHS-12)."""
    sep = _field(fields, 1) or "|"
    encoding = _field(fields, 2) or "^~\\&"
    out = [name.decode(), encoding, _field(fields, 5), _field(fields, 6), _field(fields, 3),
           _field(fields, 4), format_ts(timestamp), "", "", "", uuid.uuid4().hex[:20].upper(),
           _field(fields, 11)]
    return out[0] + sep + sep.join(out[1:])


def batch_ack(headers: dict[bytes, list[bytes]], acks: list[bytes], timestamp: datetime) -> bytes:
    """Wrap the acknowledgments of a batch's messages in BHS/BTS (and FHS/FTS)."""
    lines: list[str] = []
    if b"FHS" in headers:
        lines.append(_header(b"FHS", headers[b"FHS"], timestamp))
    bhs = headers.get(b"BHS") or headers.get(b"FHS") or [b"BHS", b"|"]
    lines.append(_header(b"BHS", bhs, timestamp))
    body = b"".join(a if a.endswith(b"\r") else a + b"\r" for a in acks)
    sep = (_field(bhs, 1) or "|")
    trailer = [f"BTS{sep}{len(acks)}"] + ([f"FTS{sep}1"] if b"FHS" in headers else [])
    head = ("\r".join(lines) + "\r").encode()
    return head + body + ("\r".join(trailer) + "\r").encode()


_SEVERITY = {"AA": 0, "CA": 0, "AE": 1, "CE": 1, "AR": 2, "CR": 2}


class _Handles(Protocol):
    async def handle(self, raw: bytes, transport: str = ...) -> Any: ...


async def handle_batch(service: _Handles, raw: bytes, transport: str,
                       timestamp: datetime) -> tuple[str, bytes]:
    """Process every message of a batch in order; (worst acknowledgment code, batch ACK)."""
    headers, messages = split(raw)
    acks: list[bytes] = []
    worst = "AA"
    for message in messages:
        outcome = await service.handle(message, transport)
        acks.extend(outcome.responses)
        if _SEVERITY.get(outcome.ack_code, 2) > _SEVERITY[worst]:
            worst = outcome.ack_code
    return worst, batch_ack(headers, acks, timestamp)

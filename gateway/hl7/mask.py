"""Raw messages for people: the ER7 text with the PID segment's fields masked.

PID carries the patient's identity (PID-3 MRNs and codice fiscale, PID-5 name, PID-7 birth
date, PID-11 address, PID-13 phone…). Masked, every non-empty field after PID-1 (the set
id) reads ``***``; the segment structure (how many fields, which are empty) stays visible,
which is what an interface engineer looks at. Only a caller with ``system/gateway.raw``
sees a raw message at all, and the unmasked text only when asking for it.
"""

from __future__ import annotations

MASK = "***"
MASKED_SEGMENTS = frozenset({"PID"})


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def readable(raw: bytes, *, masked: bool = True) -> str:
    """The message as lines of text (segments on their own line), PID masked unless not."""
    text = decode(raw).replace("\r\n", "\r").replace("\n", "\r")
    separator = text[3] if text.startswith("MSH") and len(text) > 3 else "|"
    lines = [seg for seg in text.split("\r") if seg]
    if masked:
        lines = [_mask(seg, separator) for seg in lines]
    return "\n".join(lines)


def _mask(segment: str, separator: str) -> str:
    fields = segment.split(separator)
    if fields[0] not in MASKED_SEGMENTS:
        return segment
    return separator.join(fields[:2] + [MASK if f else "" for f in fields[2:]])

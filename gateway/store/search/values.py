"""Value helpers shared by indexing and querying: date ranges, string normalisation,
escaped splitting, prefixes.

Dates: every date, dateTime and instant becomes a half-open range ``[low, high)`` of epoch
milliseconds in UTC, as wide as its precision (``2024`` → the whole year). A dateTime with a
time but without a zone, and every date without time, is read in UTC (the gateway stores
instants with zones; see docs/store.md).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation

MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
MAX_MS = 253402300800000  # 10000-01-01T00:00:00Z
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
TOP = chr(0x10FFFF)  # sorts after every normalised string

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<z>Z|[+-]\d{2}:?\d{2})?)?)?)?$")


def date_range(value: str) -> tuple[int, int]:
    """``[low, high)`` in epoch ms for a FHIR date/dateTime/instant; ValueError if malformed."""
    match = _DATE.match(value.strip())
    if match is None:
        raise ValueError("not a FHIR date")
    g = match.groupdict()
    year, month, day = int(g["y"]), int(g["m"] or 1), int(g["d"] or 1)
    start = datetime(year, month, day, int(g["H"] or 0), int(g["M"] or 0), int(g["S"] or 0),
                     int((g["f"] or "0")[:6].ljust(6, "0")), tzinfo=_zone(g["z"]))
    low = _ms(start)
    if g["f"]:
        return low, low + max(1, 10 ** (3 - min(len(g["f"]), 3)))
    if g["S"]:
        return low, low + 1000
    if g["M"]:
        return low, low + 60_000
    if g["d"]:
        return low, _ms(start + timedelta(days=1))
    if g["m"]:
        nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return low, _ms(nxt)
    return low, _ms(datetime(year + 1, 1, 1, tzinfo=UTC)) if year < 9999 else MAX_MS


def period_range(start: str | None, end: str | None) -> tuple[int, int]:
    """A Period: a missing start or end is open (the smallest / largest instant)."""
    low = date_range(start)[0] if start else MIN_MS
    high = date_range(end)[1] if end else MAX_MS
    return low, high


def _zone(text: str | None) -> tzinfo:
    if not text or text == "Z":
        return UTC
    sign = 1 if text[0] == "+" else -1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _ms(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return delta // timedelta(milliseconds=1)


def normalise(text: str) -> str:
    """Case- and accent-insensitive form used by string search (NFKD, no marks, casefold)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash; ``\\,`` ``\\|`` ``\\$`` ``\\\\`` unescaped."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            current.append(nxt if nxt in ",|$\\" else "\\" + nxt)
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def split_or(text: str) -> list[str]:
    """Comma-separated alternatives (OR), keeping escapes for the next split level."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def prefixed(value: str) -> tuple[str, str]:
    """``ge2024`` → ("ge", "2024"); no prefix → ("eq", value)."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def decimal_range(text: str) -> tuple[float, float, float]:
    """(value, low, high): the implicit precision range of a decimal (``5.4`` → 5.35..5.45)."""
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError("not a number") from exc
    if not number.is_finite():
        raise ValueError("not a finite number")
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return float(number), float(number - half), float(number + half)

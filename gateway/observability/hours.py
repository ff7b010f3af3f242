"""Working hours of a site, as its file writes them: ``"Mon-Fri 07:00-19:00"``, several
spans separated by commas (``"Mon-Fri 07:00-19:00, Sat 08:00-12:00"``), in the site's
time zone. A site is "silent" when more than N minutes *of its working hours* passed since
its last message: a night or a weekend without messages is not silence."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_SPAN = re.compile(r"^(?P<first>[A-Z][a-z]{2})(?:-(?P<last>[A-Z][a-z]{2}))?\s+"
                   r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")
LOOK_BACK = timedelta(days=60)  # silence longer than this counts as this


@dataclass(frozen=True)
class Span:
    days: frozenset[int]  # Monday = 0
    start: time
    end: time  # 24:00 is written as 23:59


def _clock(text: str, what: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours == 24 and minutes == 0:
        return time(23, 59, 59, 999999)
    if hours > 23 or minutes > 59:
        raise ValueError(f"{what} {text!r} is not a time of day (HH:MM, 00:00 to 24:00)")
    return time(hours, minutes)


def parse_hours(text: str) -> tuple[Span, ...]:
    """``"Mon-Fri 07:00-19:00[, Sat 08:00-12:00…]"`` → spans; ValueError naming the part."""
    spans = []
    for part in (p.strip() for p in text.split(",")):
        found = _SPAN.match(part)
        if not found:
            raise ValueError(f"working_hours {part!r}: write DAY[-DAY] HH:MM-HH:MM, e.g. "
                             "'Mon-Fri 07:00-19:00' (days Mon Tue Wed Thu Fri Sat Sun)")
        first, last = found["first"], found["last"] or found["first"]
        for day in (first, last):
            if day not in DAYS:
                raise ValueError(f"working_hours {part!r}: {day!r} is not one of "
                                 f"{' '.join(DAYS)}")
        a, b = DAYS.index(first), DAYS.index(last)
        days = frozenset(range(a, b + 1)) if a <= b else frozenset([*range(a, 7),
                                                                    *range(0, b + 1)])
        start, end = _clock(found["start"], "start"), _clock(found["end"], "end")
        if end <= start:
            raise ValueError(f"working_hours {part!r}: the end must come after the start")
        spans.append(Span(days, start, end))
    return tuple(spans)


def working_seconds(spans: tuple[Span, ...] | None, tz: str, since: datetime,
                    until: datetime) -> float:
    """Seconds of working hours between two aware instants (all of them without spans)."""
    since = max(since, until - LOOK_BACK)
    if until <= since:
        return 0.0
    if not spans:
        return (until - since).total_seconds()
    zone = ZoneInfo(tz)
    day = since.astimezone(zone).date()
    last = until.astimezone(zone).date()
    total = 0.0
    while day <= last:
        for span in spans:
            if day.weekday() in span.days:
                opens = datetime.combine(day, span.start, zone)
                closes = datetime.combine(day, span.end, zone)
                overlap = min(closes, until) - max(opens, since)
                total += max(0.0, overlap.total_seconds())
        day += timedelta(days=1)
    return total

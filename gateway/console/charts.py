"""Inline SVG charts for the console: pure functions from numbers to markup (no script, no
library, readable offline and on a slow PC). Every text in them is escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#1f6feb", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c",
           "#5c940d", "#495057")


def hourly_bars(hours: Sequence[tuple[str, int, int]], *, width: int = 240,
                height: int = 48) -> Markup:
    """The last 24 h of one site: a bar per hour (accepted in blue, AE/AR in red on top);
    ``hours``: (label, total, not accepted), oldest first."""
    peak = max((total for _, total, _ in hours), default=0) or 1
    step = width / max(len(hours), 1)
    bars = []
    for n, (label, total, bad) in enumerate(hours):
        x = n * step
        good_h = (total - bad) / peak * (height - 2)
        bad_h = bad / peak * (height - 2)
        title = f"<title>{escape(label)}: {total} messages, {bad} AE/AR</title>"
        bars.append(f'<g>{title}<rect x="{x:.1f}" y="{height - good_h:.1f}" '
                    f'width="{step - 1:.1f}" height="{good_h:.1f}" class="ok"/>'
                    f'<rect x="{x:.1f}" y="{height - good_h - bad_h:.1f}" '
                    f'width="{step - 1:.1f}" height="{bad_h:.1f}" class="bad"/></g>')
    return Markup(  # noqa: S704 - every text in it is escaped
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
                  f'height="{height}" role="img" aria-label="messages per hour, last 24 h">'
                  f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" class="axis"/>'
                  + "".join(bars) + "</svg>")


def lines(series: Mapping[str, Sequence[tuple[str, int]]], *, width: int = 560,
          height: int = 160) -> Markup:
    """Cumulative counts over time, a line per series (a site); points (label, value) in
    time order, labels sortable (ISO dates)."""
    labels = sorted({label for points in series.values() for label, _ in points})
    if not labels:
        return Markup('<p class="muted">no data yet</p>')
    peak = max((v for points in series.values() for _, v in points), default=0) or 1
    x_of = {label: (n / (len(labels) - 1) * (width - 40) + 30) if len(labels) > 1
            else width / 2 for n, label in enumerate(labels)}
    out = [f'<svg class="chart" viewBox="0 0 {width} {height + 20}" width="{width}" '
           f'height="{height + 20}" role="img" aria-label="subjects enrolled over time">',
           f'<line x1="30" y1="{height}" x2="{width}" y2="{height}" class="axis"/>',
           f'<text x="0" y="12" class="tick">{peak}</text>',
           f'<text x="30" y="{height + 16}" class="tick">{escape(labels[0])}</text>',
           f'<text x="{width - 70}" y="{height + 16}" class="tick">{escape(labels[-1])}</text>']
    for n, (name, points) in enumerate(sorted(series.items())):
        colour = PALETTE[n % len(PALETTE)]
        xy = [(x_of[label], height - v / peak * (height - 10), label, v)
              for label, v in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in xy)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                   f'points="{path}"><title>{escape(name)}</title></polyline>')
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>'
                f"{escape(name)}: {v} by {escape(label)}</title></circle>"
                for x, y, label, v in xy]
    legend = "".join(f'<span class="key" style="border-color:{PALETTE[n % len(PALETTE)]}">'
                     f"{escape(name)}</span>" for n, name in enumerate(sorted(series)))
    return Markup(  # noqa: S704 - every text in it is escaped
        "".join(out) + "</svg>" + f'<div class="legend">{legend}</div>')


def week_bars(weeks: Sequence[tuple[str, int]], *, width: int = 560,
              height: int = 100) -> Markup:
    """Results received per week: (week label, count), oldest first."""
    if not any(n for _, n in weeks):
        return Markup('<p class="muted">no results yet</p>')
    peak = max(n for _, n in weeks) or 1
    step = width / len(weeks)
    bars = "".join(
        f'<g><title>{escape(label)}: {n}</title><rect x="{i * step:.1f}" '
        f'y="{height - n / peak * (height - 2):.1f}" width="{max(step - 2, 1):.1f}" '
        f'height="{n / peak * (height - 2):.1f}" class="ok"/></g>'
        for i, (label, n) in enumerate(weeks))
    return Markup(  # noqa: S704 - every text in it is escaped
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
                  f'height="{height}" role="img" aria-label="results per week">'
                  f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" class="axis"/>'
                  f"{bars}</svg>")

"""Unit handling for lab exports: a local spelling → UCUM (the site's ``unit_map``, then the
mapping's aliases), and conversion to the unit the code map expects.

Conversions are a small table of UCUM units that measure the same property, with their
factor to a base unit. A pair not in one group is "not convertible" and the row is rejected.
"""

from __future__ import annotations

from gateway.adapters.site import Site

# property → {UCUM unit: factor to the group's base unit}
_GROUPS: tuple[dict[str, float], ...] = (
    {"g/L": 1.0, "g/dL": 10.0, "mg/dL": 0.01, "mg/L": 0.001, "ug/mL": 0.001,
     "ug/L": 1e-6, "ng/mL": 1e-6, "ng/L": 1e-9, "pg/mL": 1e-9},
    {"10*9/L": 1.0, "10*3/uL": 1.0, "/nL": 1.0, "/uL": 1e-3, "10*6/L": 1e-3,
     "/L": 1e-9, "10*12/L": 1e3, "10*6/uL": 1e3},
    {"%": 1.0, "1": 100.0, "{ratio}": 100.0},
    {"{cells}/kg": 1.0, "10*6/kg": 1e6, "10*6{cells}/kg": 1e6},
)
_ALIASES: dict[str, str] = {
    "mg/dl": "mg/dL", "mg/l": "mg/L", "g/dl": "g/dL", "g/l": "g/L", "ng/ml": "ng/mL",
    "pg/ml": "pg/mL", "ug/l": "ug/L", "µg/L": "ug/L", "10^9/L": "10*9/L", "x10^9/L": "10*9/L",
    "10^3/uL": "10*3/uL", "10^3/ul": "10*3/uL", "K/uL": "10*3/uL", "cells/uL": "/uL",
    "cell/uL": "/uL", "/ul": "/uL", "EU/mL": "{EU}/mL", "10^6/kg": "10*6/kg",
}


def to_ucum(unit: str, site: Site) -> str:
    """The UCUM spelling of ``unit`` (unchanged when nothing knows it)."""
    mapped = site.unit_map.get(unit)
    if mapped is not None:
        return mapped.code
    return _ALIASES.get(unit, unit)


def factor(source: str, target: str) -> float | None:
    """Multiply a value in ``source`` by this to get it in ``target``; None: not convertible."""
    if source == target:
        return 1.0
    for group in _GROUPS:
        if source in group and target in group:
            return group[source] / group[target]
    return None


def convert(value: float, source: str, target: str) -> float | None:
    f = factor(source, target)
    return None if f is None else round(value * f, 10)

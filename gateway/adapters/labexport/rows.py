"""Validate one lab-export row into a ``LabRow``, or say per column what is wrong.

Nothing here reads files or writes the store; the report keeps row numbers, columns and
reasons, never values (a value may identify a patient).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from gateway.adapters.labexport.units import convert, to_ucum
from gateway.adapters.loader import Network
from gateway.adapters.site import NETWORK_COLUMNS, Coding, Site, Study

_T = TypeVar("_T")

NUMBER = re.compile(r"^(?P<comparator><=|>=|<|>)?\s*(?P<number>[-+]?\d+(?:[.,]\d+)?)$")
STATUS = {"final": "final", "f": "final", "preliminary": "preliminary", "p": "preliminary",
          "corrected": "corrected", "c": "corrected", "amended": "amended", "a": "amended",
          "cancelled": "cancelled", "x": "cancelled", "entered-in-error": "entered-in-error"}
INTERPRETATION = {"H": "H", "HH": "HH", "L": "L", "LL": "LL", "N": "N", "A": "A", "AA": "AA",
                  "POS": "POS", "NEG": "NEG", "DET": "DET", "ND": "ND", "IND": "IND"}


@dataclass(frozen=True, slots=True)
class RowIssue:
    row: int
    column: str
    reason: str
    severity: str = "error"


@dataclass(slots=True)
class LabRow:
    row: int
    subject: str
    code: Coding | None  # the mapped coding (None: the row carries a standard system)
    local: Coding  # the coding as sent
    value: float | str
    comparator: str | None = None
    unit: str | None = None
    study: Study | None = None
    specimen_id: str = ""
    specimen_type: str = ""
    parent_specimen_id: str = ""
    product_din: str = ""
    collected_at: str | None = None
    performed_at: str | None = None
    reference_range: str = ""
    interpretation: str = ""
    status: str = "final"
    issues: list[RowIssue] = field(default_factory=list)

    def key(self) -> tuple[str, ...]:
        """What makes two rows the same result."""
        return (self.subject, self.specimen_id, self.local.code, self.collected_at or "",
                self.performed_at or "")


class _RowError(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column, self.reason = column, reason


def parse_datetime(text: str, zone: str, formats: tuple[str, ...] = ()) -> str:
    """ISO 8601 (or one of ``formats``) → FHIR dateTime; a time without zone gets ``zone``."""
    for fmt in formats:
        try:
            parsed = datetime.strptime(text, fmt)  # noqa: DTZ007 - the zone is added below
        except ValueError:
            continue
        return _zoned(parsed, zone, date_only="%H" not in fmt)
    if re.fullmatch(r"\d{4}(-\d{2}){0,2}", text):
        return text
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError("not an ISO 8601 date or date-time") from exc
    return _zoned(parsed, zone, date_only=False)


def _zoned(parsed: datetime, zone: str, *, date_only: bool) -> str:
    if date_only:
        return parsed.date().isoformat()
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.isoformat()


def _date(values: dict[str, str], column: str, site: Site, formats: tuple[str, ...]) -> str | None:
    text = values.get(column, "")
    if not text:
        return None
    try:
        return parse_datetime(text, site.timezone, formats)
    except ValueError as exc:
        raise _RowError(column, str(exc)) from exc


def _code(values: dict[str, str], site: Site) -> tuple[Coding | None, Coding]:
    code, system = values.get("test_code", ""), values.get("test_system", "")
    if not code:
        raise _RowError("test_code", "missing test code")
    local = Coding(system=system or site.local_system, code=code,
                   display=values.get("test_name") or None)
    if system:
        return None, local
    mapped = site.code_map.get(code)
    if mapped is None and site.unmapped_codes == "strict":
        raise _RowError("test_code", "unknown local code (site unmapped_codes: strict): add "
                        "it to the site's code_map or give test_system")
    return mapped, local


def _value(values: dict[str, str], decimal_comma: bool) -> tuple[float | str, str | None]:
    text = values.get("value", "")
    if not text:
        raise _RowError("value", "missing value")
    match = NUMBER.match(text)
    if match is None or ("," in text and not decimal_comma):
        return text, None
    return float(match["number"].replace(",", ".")), match["comparator"]


def _unit(row: LabRow, values: dict[str, str], site: Site) -> None:
    sent = values.get("unit", "")
    expected = row.code.unit if row.code else None
    if isinstance(row.value, str):
        row.unit = to_ucum(sent, site) if sent else expected
        return
    if not sent:
        if expected:
            raise _RowError("unit", f"missing unit (the code map expects {expected})")
        return
    unit = to_ucum(sent, site)
    if expected and unit != expected:
        converted = convert(row.value, unit, expected)
        if converted is None:
            raise _RowError("unit", f"unit {unit} is not convertible to {expected}")
        row.value, unit = converted, expected
    row.unit = unit


def _study(values: dict[str, str], site: Site, network: Network) -> Study | None:
    code = values.get("study_id", "")
    if not code:
        return None
    study = network.study_for(site.study_aliases.get(code, code))
    if study is None:
        raise _RowError("study_id", "unknown study: add it to study_aliases or studies.yaml")
    return study


def parse_row(number: int, values: dict[str, str], site: Site, network: Network, *,
              decimal_comma: bool = False, date_formats: tuple[str, ...] = ()) -> LabRow:
    """One row → LabRow; raises RowError naming every bad column of the row (a date in
    none of the layout's formats, an unknown unit, a missing subject…), not only the
    first. A local code missing from the code map is kept (``LabRow.issues`` warns), unless
    the site is ``unmapped_codes: strict``."""
    errors: list[RowIssue] = []

    def check(step: Callable[..., _T], *args: Any) -> _T | None:
        try:
            return step(*args)
        except _RowError as exc:
            errors.append(RowIssue(number, exc.column, exc.reason))
            return None

    subject = values.get("site_subject_id", "")
    if not subject:
        errors.append(RowIssue(number, "site_subject_id", "missing subject"))
    codes = check(_code, values, site)
    value = check(_value, values, decimal_comma)
    study = check(_study, values, site, network)
    collected = check(_date, values, "collected_at", site, date_formats)
    performed = check(_date, values, "performed_at", site, date_formats)
    if codes is not None and value is not None:
        row = LabRow(number, subject, codes[0], codes[1], value[0], value[1], study=study,
                     collected_at=collected, performed_at=performed)
        check(_unit, row, values, site)
        check(_details, row, values)
    errors.sort(key=lambda i: NETWORK_COLUMNS.index(i.column)
                if i.column in NETWORK_COLUMNS else len(NETWORK_COLUMNS))
    if errors:
        raise RowError(errors)
    if codes is not None and codes[0] is None and not values.get("test_system"):
        row.issues.append(RowIssue(number, "test_code", "local code not in the site's "
                                   "code_map: kept in the site's code system, listed in "
                                   "/admin/unmapped-codes", severity="warning"))
    return row


def _details(row: LabRow, values: dict[str, str]) -> None:
    for name in ("specimen_id", "specimen_type", "parent_specimen_id", "product_din",
                 "reference_range", "interpretation"):
        setattr(row, name, values.get(name, ""))
    status = values.get("result_status", "").strip().lower() or "final"
    if status not in STATUS:
        raise _RowError("result_status", "unknown result status (final, preliminary, "
                        "corrected, amended, cancelled, entered-in-error)")
    row.status = STATUS[status]
    if row.parent_specimen_id and not row.specimen_id:
        raise _RowError("specimen_id", "parent_specimen_id given without specimen_id")
    if row.product_din and not re.fullmatch(r"[A-Z]\d{12}", row.product_din):
        raise _RowError("product_din", "not a 13-character ISBT 128 DIN")


class RowError(Exception):
    """Every error of one row."""

    def __init__(self, issues: list[RowIssue]) -> None:
        super().__init__("; ".join(f"row {i.row}, column {i.column}: {i.reason}"
                                   for i in issues))
        self.issues = issues
        self.issue = issues[0]

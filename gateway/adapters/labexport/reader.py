"""Read a lab-export file into rows keyed by the network CSV columns.

The network CSV layout is recognised by its header and needs no configuration. Any other
layout is one of the site's ``lab_exports`` (CSV, TSV or XLSX), chosen by name or, without
a name, by the first whose headers all appear in the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from gateway.adapters.site import NETWORK_COLUMNS, LabExportFormat, Site
from gateway.errors import InboundError

XLSX_MAGIC = b"PK\x03\x04"
NETWORK_LAYOUT = "network-csv"
REQUIRED_NETWORK = ("site_subject_id", "test_code", "value")


class ExportFileError(InboundError):
    """The file as a whole cannot be read (no rows are imported)."""

    ack_code = "AR"
    err_code = "100"


@dataclass(frozen=True, slots=True)
class Table:
    layout: str  # "network-csv" or the site's lab_exports name
    rows: list[tuple[int, dict[str, str]]]  # (row number in the file, network column → text)
    decimal_comma: bool = False
    date_formats: tuple[str, ...] = ()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _csv_rows(data: bytes, delimiter: str, encoding: str) -> Iterator[list[str]]:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ExportFileError(f"the file is not {encoding} text (byte {exc.start})") from exc
    yield from csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


def _xlsx_rows(data: bytes, sheet: str | None) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for a bad file
        raise ExportFileError(f"not a readable XLSX workbook: {type(exc).__name__}") from exc
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise ExportFileError(f"the workbook has no sheet {sheet!r}")
        ws = book[sheet] if sheet else book.worksheets[0]
        for row in ws.iter_rows(values_only=True):
            yield [_text(v) for v in row]
    finally:
        book.close()


def _raw_rows(data: bytes, fmt: LabExportFormat | None) -> list[list[str]]:
    if data.startswith(XLSX_MAGIC):
        return list(_xlsx_rows(data, fmt.sheet if fmt else None))
    if fmt is not None and fmt.format == "xlsx":
        raise ExportFileError(f"layout {fmt.name} expects an XLSX workbook")
    delimiter = (fmt.delimiter if fmt and fmt.delimiter else
                 "\t" if fmt and fmt.format == "tsv" else _sniff(data))
    return list(_csv_rows(data, delimiter, fmt.encoding if fmt else "utf-8-sig"))


def _sniff(data: bytes) -> str:
    first = data.split(b"\n", 1)[0]
    return max(",;\t", key=lambda d: first.count(d.encode()))


def _is_network(header: list[str]) -> bool:
    names = {h.strip().lower() for h in header}
    return all(c in names for c in REQUIRED_NETWORK)


def _network_table(raw: list[list[str]]) -> Table:
    header = [h.strip().lower() for h in raw[0]]
    unknown = [h for h in header if h and h not in NETWORK_COLUMNS]
    if unknown:
        raise ExportFileError(f"unknown network CSV column(s): {', '.join(unknown)}")
    rows = [(n, {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header) if h})
            for n, row in enumerate(raw[1:], start=2) if any(c.strip() for c in row)]
    return Table(NETWORK_LAYOUT, rows)


def _site_table(raw: list[list[str]], fmt: LabExportFormat) -> Table:
    header_at = fmt.header_row - 1
    if header_at >= len(raw):
        raise ExportFileError(f"layout {fmt.name}: no header row {fmt.header_row}")
    header = [h.strip() for h in raw[header_at]]
    missing = [h for h in fmt.columns.values() if h not in header]
    if missing:
        raise ExportFileError(f"layout {fmt.name}: missing column(s) {', '.join(missing)}")
    index = {col: header.index(h) for col, h in fmt.columns.items()}
    rows = []
    for n, row in enumerate(raw[header_at + 1:], start=fmt.header_row + 1):
        if not any(c.strip() for c in row):
            continue
        values: dict[str, str] = {col: (row[i].strip() if i < len(row) else "")
                                  for col, i in index.items()}
        merged: dict[str, str] = dict(fmt.constants.items())
        merged.update(values)
        rows.append((n, merged))
    return Table(fmt.name, rows, fmt.decimal_comma, tuple(fmt.date_formats))


def _header_matches(raw: list[list[str]], fmt: LabExportFormat) -> bool:
    at = fmt.header_row - 1
    return at < len(raw) and set(fmt.columns.values()) <= {h.strip() for h in raw[at]}


def _matching(data: bytes, site: Site) -> tuple[LabExportFormat, list[list[str]]] | None:
    """The first site layout whose headers are all in the file (read with its settings)."""
    is_xlsx = data.startswith(XLSX_MAGIC)
    for fmt in site.lab_exports:
        if (fmt.format == "xlsx") != is_xlsx:
            continue
        try:
            raw = _raw_rows(data, fmt)
        except ExportFileError:
            continue
        if _header_matches(raw, fmt):
            return fmt, raw
    return None


def read_table(data: bytes, site: Site, layout: str | None = None) -> Table:
    """Rows of ``data`` as network columns; ExportFileError when the file is unreadable."""
    if layout and layout != NETWORK_LAYOUT:
        fmt = site.export_format(layout)
        if fmt is None:
            raise ExportFileError(f"site {site.id} has no lab export layout {layout!r}")
        return _site_table(_raw_rows(data, fmt), fmt)
    raw = _raw_rows(data, None)
    if not raw:
        raise ExportFileError("the file is empty")
    if _is_network(raw[0]) or layout == NETWORK_LAYOUT:
        return _network_table(raw)
    found = _matching(data, site)
    if found is None:
        raise ExportFileError("the header matches neither the network CSV format nor a "
                              f"lab export layout of site {site.id}")
    return _site_table(found[1], found[0])

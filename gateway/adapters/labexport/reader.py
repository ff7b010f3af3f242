"""Read a lab-export file into rows keyed by the network CSV columns.

The network CSV layout is recognised by its header and needs no configuration. Any other
layout is one of the site's ``lab_exports`` (CSV, TSV or XLSX), chosen by name or, without
a name, by the first whose headers all appear in the file.

Hostile files: a CSV field longer than the csv module's limit (131,072 characters) makes
that row a row error (the others are read on); an XLSX workbook is a zip, opened only when
the sizes its directory declares are within ``MAX_XLSX_UNCOMPRESSED`` in all and every large
part compresses at most ``MAX_XLSX_RATIO`` to one (a zip bomb is refused before it expands:
Python's zipfile never inflates a part beyond its declared size).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import islice
from typing import Any

from gateway.adapters.labexport.rows import RowIssue
from gateway.adapters.site import NETWORK_COLUMNS, LabExportFormat, Site
from gateway.errors import InboundError

XLSX_MAGIC = b"PK\x03\x04"
NETWORK_LAYOUT = "network-csv"
REQUIRED_NETWORK = ("site_subject_id", "test_code", "value")
MAX_XLSX_UNCOMPRESSED = 256 * 2**20  # bytes, all parts of a workbook together
MAX_XLSX_RATIO = 200  # uncompressed : compressed, for a part larger than RATIO_FLOOR
RATIO_FLOOR = 2**20
MAX_XLSX_PARTS = 10_000


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
    unreadable: tuple[RowIssue, ...] = ()  # rows the reader could not read (row errors)


class UnreadableRow(list[str]):
    """A row the CSV reader gave up on (a field over the size limit), kept in its place so
    that the row numbers after it stay right; ``column`` is its 0-based column when known."""

    def __init__(self, reason: str, column: int | None) -> None:
        super().__init__()
        self.reason = reason
        self.column = column


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
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    starts: list[int] = []  # line start offsets, computed at the first unreadable row
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader resumes at the next line
            starts = starts or _line_starts(text)
            yield UnreadableRow(f"not read: {exc}",
                                _long_column(text, starts, reader.line_num, delimiter))


def _line_starts(text: str) -> list[int]:
    starts = [0]
    pos = text.find("\n")
    while pos >= 0:
        starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return starts


def _long_column(text: str, starts: list[int], line_num: int, delimiter: str) -> int | None:
    """The 0-based column of the over-long field on line ``line_num`` (1-based), found by a
    plain split of that line; None when the split cannot tell."""
    if not 1 <= line_num <= len(starts):
        return None
    at = starts[line_num - 1]
    end = starts[line_num] if line_num < len(starts) else len(text)
    limit = csv.field_size_limit()
    parts = text[at:end].split(delimiter)
    return next((i for i, part in enumerate(parts) if len(part) > limit), None)


def check_zip(data: bytes) -> None:
    """Refuse a workbook whose declared sizes would exhaust memory (before it is opened)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except Exception as exc:  # noqa: BLE001 - zipfile also raises NotImplementedError, …
        raise ExportFileError(f"not a readable XLSX workbook: {type(exc).__name__}") from exc
    if len(parts) > MAX_XLSX_PARTS:
        raise ExportFileError(f"the workbook has {len(parts)} parts, more than "
                              f"{MAX_XLSX_PARTS}")
    total = sum(p.file_size for p in parts)
    if total > MAX_XLSX_UNCOMPRESSED:
        raise ExportFileError(f"the workbook expands to {total} bytes, more than the "
                              f"{MAX_XLSX_UNCOMPRESSED} allowed: split the export")
    for part in parts:
        if part.file_size > RATIO_FLOOR and part.file_size > MAX_XLSX_RATIO * max(
                part.compress_size, 1):
            raise ExportFileError(
                f"workbook part {part.filename[:80]!r} expands {part.file_size} bytes from "
                f"{part.compress_size}: more than {MAX_XLSX_RATIO}:1, refused as a zip bomb")


def _xlsx_rows(data: bytes, sheet: str | None) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    check_zip(data)
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for a bad file
        raise ExportFileError(f"not a readable XLSX workbook: {type(exc).__name__}") from exc
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise ExportFileError(f"the workbook has no sheet {sheet!r}")
        if not book.worksheets:
            raise ExportFileError("the workbook has no worksheet")
        ws = book[sheet] if sheet else book.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - damaged sheet XML, found while reading
                raise ExportFileError(f"the workbook's sheet cannot be read "
                                      f"({type(exc).__name__})") from exc
            yield [_text(v) for v in row]
    finally:
        book.close()


def _raw_rows(data: bytes, fmt: LabExportFormat | None) -> Iterator[list[str]]:
    """The file's rows, one at a time (never all of them as lists at once)."""
    if data.startswith(XLSX_MAGIC):
        return _xlsx_rows(data, fmt.sheet if fmt else None)
    if fmt is not None and fmt.format == "xlsx":
        raise ExportFileError(f"layout {fmt.name} expects an XLSX workbook")
    delimiter = (fmt.delimiter if fmt and fmt.delimiter else
                 "\t" if fmt and fmt.format == "tsv" else _sniff(data))
    return _csv_rows(data, delimiter, fmt.encoding if fmt else "utf-8-sig")


def _head(data: bytes, fmt: LabExportFormat | None, count: int) -> list[list[str]]:
    """The first ``count`` rows only (layout detection reads no further)."""
    return list(islice(_raw_rows(data, fmt), count))


def _sniff(data: bytes) -> str:
    first = data.split(b"\n", 1)[0]
    return max(",;\t", key=lambda d: first.count(d.encode()))


def _is_network(header: list[str]) -> bool:
    names = {h.strip().lower() for h in header}
    return all(c in names for c in REQUIRED_NETWORK)


def _unreadable(row: UnreadableRow, n: int, header: list[str]) -> RowIssue:
    """The row error of a row the reader gave up on, naming the column when it can."""
    col = row.column
    name = header[col] if col is not None and col < len(header) and header[col] else "(row)"
    return RowIssue(n, name, row.reason)


def _network_table(raw: Iterator[list[str]]) -> Table:
    header = [h.strip().lower() for h in next(raw, [])]
    unknown = [h for h in header if h and h not in NETWORK_COLUMNS]
    if unknown:
        raise ExportFileError(f"unknown network CSV column(s): {', '.join(unknown)}")
    rows, unreadable = [], []
    for n, row in enumerate(raw, start=2):
        if isinstance(row, UnreadableRow):
            unreadable.append(_unreadable(row, n, header))
        elif any(c.strip() for c in row):
            rows.append((n, {h: (row[i].strip() if i < len(row) else "")
                             for i, h in enumerate(header) if h}))
    return Table(NETWORK_LAYOUT, rows, unreadable=tuple(unreadable))


def _site_table(raw: Iterator[list[str]], fmt: LabExportFormat) -> Table:
    above = list(islice(raw, fmt.header_row))
    if len(above) < fmt.header_row:
        raise ExportFileError(f"layout {fmt.name}: no header row {fmt.header_row}")
    header = [h.strip() for h in above[-1]]
    missing = [h for h in fmt.columns.values() if h not in header]
    if missing:
        raise ExportFileError(f"layout {fmt.name}: missing column(s) {', '.join(missing)}")
    index = {col: header.index(h) for col, h in fmt.columns.items()}
    names = {h: col for col, h in fmt.columns.items()}  # the file's header → network column
    rows, unreadable = [], []
    for n, row in enumerate(raw, start=fmt.header_row + 1):
        if isinstance(row, UnreadableRow):
            unreadable.append(_unreadable(row, n, [names.get(h, h) for h in header]))
        elif any(c.strip() for c in row):
            merged: dict[str, str] = dict(fmt.constants.items())
            merged.update({col: (row[i].strip() if i < len(row) else "")
                           for col, i in index.items()})
            rows.append((n, merged))
    return Table(fmt.name, rows, fmt.decimal_comma, tuple(fmt.date_formats),
                 tuple(unreadable))


def _header_matches(head: list[list[str]], fmt: LabExportFormat) -> bool:
    at = fmt.header_row - 1
    return at < len(head) and set(fmt.columns.values()) <= {h.strip() for h in head[at]}


def _matching(data: bytes, site: Site) -> LabExportFormat | None:
    """The first site layout whose headers are all in the file (read with its settings)."""
    is_xlsx = data.startswith(XLSX_MAGIC)
    for fmt in site.lab_exports:
        if (fmt.format == "xlsx") != is_xlsx:
            continue
        try:
            head = _head(data, fmt, fmt.header_row)
        except ExportFileError:
            continue
        if _header_matches(head, fmt):
            return fmt
    return None


def read_table(data: bytes, site: Site, layout: str | None = None) -> Table:
    """Rows of ``data`` as network columns; ExportFileError when the file is unreadable.
    The file is read row by row: only the rows kept (as network columns) are held."""
    if layout and layout != NETWORK_LAYOUT:
        fmt = site.export_format(layout)
        if fmt is None:
            raise ExportFileError(f"site {site.id} has no lab export layout {layout!r}")
        return _site_table(_raw_rows(data, fmt), fmt)
    head = _head(data, None, 1)
    if not head:
        raise ExportFileError("the file is empty")
    if _is_network(head[0]) or layout == NETWORK_LAYOUT:
        return _network_table(_raw_rows(data, None))
    found = _matching(data, site)
    if found is None:
        raise ExportFileError("the header matches neither the network CSV format nor a "
                              f"lab export layout of site {site.id}")
    return _site_table(_raw_rows(data, found), found)

"""A view's rows as bytes: JSON (one array of objects), NDJSON (one object a line) or CSV.

Rows arrive in batches (lists of tuples in ``View.names`` order) and leave as one chunk
per batch, so that a large result streams in constant memory.

CSV: RFC 4180 (``csv`` module, ``\\r\\n``), a header line of the column names unless
``header`` is false; null is an empty cell, booleans ``true``/``false``, a collection or an
object its JSON text. Spreadsheet formulas are neutralised (OWASP "CSV injection"): a text
cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
apostrophe, unless the whole cell is a plain number (``-4.5``, ``+1e3``: no formula looks
like that). Numbers that are numbers in the data (FHIR decimal, integer) are written as
they are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

MEDIA_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson",
               "csv": "text/csv"}
# what _format or Accept may say for each format
ALIASES = {"json": "json", "application/json": "json",
           "ndjson": "ndjson", "application/x-ndjson": "ndjson",
           "application/ndjson": "ndjson", "application/fhir+ndjson": "ndjson",
           "csv": "csv", "text/csv": "csv"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

Row = tuple[Any, ...]


def encode(kind: str, names: Sequence[str], batches: Iterable[list[Row]], *,
           header: bool = True) -> Iterator[bytes]:
    """The chunks of the whole answer (``kind``: json, ndjson or csv)."""
    if kind == "json":
        return _json(names, batches)
    if kind == "ndjson":
        return (b"".join(orjson.dumps(dict(zip(names, row, strict=True))) + b"\n"
                         for row in batch) for batch in batches)
    return _csv(names, batches, header)


def _json(names: Sequence[str], batches: Iterable[list[Row]]) -> Iterator[bytes]:
    yield b"["
    first = True
    for batch in batches:
        if not batch:
            continue
        chunk = b",".join(orjson.dumps(dict(zip(names, row, strict=True))) for row in batch)
        yield chunk if first else b"," + chunk
        first = False
    yield b"]"


def _csv(names: Sequence[str], batches: Iterable[list[Row]], header: bool
         ) -> Iterator[bytes]:
    if header:
        yield _csv_lines([[safe_cell(n) for n in names]])
    for batch in batches:
        yield _csv_lines([[csv_cell(v) for v in row] for row in batch])


def _csv_lines(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def csv_cell(value: Any) -> Any:
    """One CSV cell (see the module's rule)."""
    if type(value) is str:
        return "'" + value if value.startswith(FORMULA_START) \
            and not PLAIN_NUMBER.match(value) else value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | dict):
        return safe_cell(orjson.dumps(value).decode())
    return safe_cell(str(value))


def safe_cell(text: str) -> str:
    if text.startswith(FORMULA_START) and not PLAIN_NUMBER.match(text):
        return "'" + text
    return text

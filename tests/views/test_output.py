"""The three output formats, and the CSV formula neutralisation (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from gateway.views.output import csv_cell, encode

NAMES = ["id", "value", "note", "tags"]
BATCHES = [[("a", 1.5, "plain", ["x", "y"]), ("b", None, None, [])], [],
           [("c", -2, "=HYPERLINK(\"http://evil\")", None)]]


@pytest.mark.parametrize(("cell", "written"), [
    ("=1+2", "'=1+2"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("-4.5", "-4.5"), ("+1e3", "+1e3"),
    ("a=b", "a=b"), ("", ""), (-3, -3), (2.25, 2.25), (True, "true"), (None, ""),
    (["=x"], "[\"=x\"]"), ({"a": 1}, "{\"a\":1}"),
])
def test_a_csv_cell_that_a_spreadsheet_would_run_as_a_formula_gets_an_apostrophe(
        cell: object, written: object) -> None:
    assert csv_cell(cell) == written


def test_csv_has_a_header_line_unless_asked_not_to_and_quotes_as_rfc_4180() -> None:
    text = b"".join(encode("csv", NAMES, BATCHES)).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [NAMES, ["a", "1.5", "plain", '["x","y"]'], ["b", "", "", "[]"],
                    ["c", "-2", "'=HYPERLINK(\"http://evil\")", ""]]
    assert text.endswith("\r\n")
    headless = b"".join(encode("csv", NAMES, BATCHES, header=False)).decode()
    assert headless == text.split("\r\n", 1)[1]


def test_json_is_one_array_and_ndjson_one_object_a_line_whatever_the_batches() -> None:
    objects = [dict(zip(NAMES, row, strict=True)) for batch in BATCHES for row in batch]
    assert orjson.loads(b"".join(encode("json", NAMES, BATCHES))) == objects
    assert orjson.loads(b"".join(encode("json", NAMES, [[], []]))) == []
    lines = b"".join(encode("ndjson", NAMES, BATCHES)).splitlines()
    assert [orjson.loads(line) for line in lines] == objects

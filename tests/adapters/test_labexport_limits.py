"""Issue 15, hostile lab exports: a CSV field over the csv module's limit is a row error
(it was a 500, and in a drop folder it stopped the watcher for every site); an XLSX whose
zip directory declares a bomb is refused before anything is inflated."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import httpx
import pytest

from gateway.adapters.labexport import import_export
from gateway.adapters.labexport import reader as labreader
from gateway.adapters.labexport.drop import scan_once
from gateway.adapters.loader import Network
from gateway.failures import FailureCounters
from gateway.store.sql import SqlStore
from tests.adapters.conftest import KEY, csv_of, serving
from tests.adapters.test_http import app_for
from tests.adapters.test_labexport import GOOD, LANZANI_HEADER, xlsx_of

# row 3: the value column (10th) holds 200,000 characters, over csv's 131,072 limit
LONG = "PZ001,FT01,,,,2026-11-20T09:30:00,ENDO,,," + "9" * 200_000 + ",UE/ml,<5,,final,,"
SECOND = "PZ001,FT01,,,,2026-11-20T09:30:00,ENDO,,,<0.5,UE/ml,<5,,final,,"


def test_a_field_over_the_csv_limit_is_a_row_error_naming_row_and_column(
        store: SqlStore, network: Network) -> None:
    report = import_export(store, network, "cf-lanzani", csv_of(GOOD, LONG, SECOND), "qc.csv",
                           KEY)
    assert report.error is None and report.rows == 3 and report.accepted == 2
    [issue] = report.rejected
    assert (issue.row, issue.column) == (3, "value")
    assert "field larger than field limit" in issue.reason and "999" not in issue.reason


def test_a_field_over_the_limit_in_a_quoted_multi_line_cell_is_still_a_row_error(
        store: SqlStore, network: Network) -> None:
    quoted = 'PZ001,FT01,,,,2026-11-20,ENDO,,,"' + "x" * 140_000 + '\nmore",UE/ml,,,,,'
    report = import_export(store, network, "cf-lanzani", csv_of(GOOD, quoted), "q.csv", KEY)
    assert report.error is None and report.accepted == 1
    assert report.rejected and report.rejected[0].row == 3


def test_the_long_field_over_http_is_a_422_with_the_row_error_not_a_500(
        store: SqlStore, network: Network) -> None:
    with serving(app_for(store, network)) as base:
        r = httpx.post(f"{base}/lab-exports", params={"site": "cf-lanzani"},
                       content=csv_of(GOOD, LONG), headers={"content-type": "text/csv"})
    assert r.status_code == 422
    assert r.json()["rejected"][0]["row"] == 3 and r.json()["accepted"] == 1


def bomb(size: int = 64 * 2**20) -> bytes:
    """A real workbook whose sheet part is replaced by ``size`` bytes of one character
    (deflates about a thousand to one), written in chunks."""
    good = zipfile.ZipFile(io.BytesIO(xlsx_of([LANZANI_HEADER])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in good.infolist():
            if info.filename.startswith("xl/worksheets/"):
                with z.open(info.filename, "w", force_zip64=True) as part:
                    for _ in range(size // 2**20):
                        part.write(b" " * 2**20)
            else:
                z.writestr(info.filename, good.read(info.filename))
    return out.getvalue()


def test_an_xlsx_zip_bomb_is_refused_before_it_expands(store: SqlStore, network: Network) -> None:
    data = bomb()
    assert len(data) < 2**20
    tracemalloc.start()
    try:
        report = import_export(store, network, "cf-lanzani", data, "bomb.xlsx", KEY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.error is not None and "zip bomb" in report.error
    assert peak < 16 * 2**20, peak  # nothing of the 64 MiB was inflated
    assert store.inbox_list(status="rejected")[0].transport == "file"


def test_an_xlsx_declaring_more_than_the_total_limit_is_refused(
        store: SqlStore, network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    data = xlsx_of([LANZANI_HEADER])
    monkeypatch.setattr(labreader, "MAX_XLSX_UNCOMPRESSED", 1_000)
    report = import_export(store, network, "cf-lanzani", data, "big.xlsx", KEY)
    assert report.error is not None and "expands to" in report.error


def test_the_zip_bomb_over_http_is_a_422_naming_the_reason(
        store: SqlStore, network: Network) -> None:
    with serving(app_for(store, network)) as base:
        r = httpx.post(f"{base}/lab-exports", params={"site": "cf-lanzani"},
                       files={"file": ("bomb.xlsx", bomb())})
    assert r.status_code == 422 and "zip bomb" in r.json()["error"]


def test_the_long_field_file_in_a_drop_folder_goes_to_error_and_the_next_is_imported(
        tmp_path: Path, store: SqlStore, network: Network) -> None:
    folder = tmp_path / "drop" / "cf-lanzani"
    folder.mkdir(parents=True)
    (folder / "a-long.csv").write_bytes(csv_of(LONG))
    (folder / "b-good.csv").write_bytes(csv_of(GOOD))
    moved = scan_once(tmp_path, store, network, KEY)
    assert sorted(p.relative_to(folder).as_posix() for p in moved) == [
        "done/b-good.csv", "error/a-long.csv"]
    report = json.loads((folder / "error" / "a-long.csv.report.json").read_text())
    assert report["rejected"][0]["column"] == "value"


def test_a_file_whose_import_raises_goes_to_error_is_counted_and_the_scan_goes_on(
        tmp_path: Path, store: SqlStore, network: Network,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.adapters.labexport import drop

    real = drop.import_export

    def failing(store_: SqlStore, network_: Network, site: str, data: bytes, name: str,
                key: bytes) -> object:
        if name.startswith("a-"):
            raise RuntimeError("a bug met by this file only")
        return real(store_, network_, site, data, name, key)

    monkeypatch.setattr(drop, "import_export", failing)
    folder = tmp_path / "drop" / "hpg23"
    folder.mkdir(parents=True)
    (folder / "a-crash.csv").write_bytes(csv_of("7,,,,,2026-11-20,PCR,,,4,mg/L,,,,,"))
    (folder / "b-fine.csv").write_bytes(csv_of("8,,,,,2026-11-20,PCR,,,5,mg/L,,,,,"))
    failures = FailureCounters()
    moved = scan_once(tmp_path, store, network, KEY, failures=failures)
    assert sorted(p.relative_to(folder).as_posix() for p in moved) == [
        "done/b-fine.csv", "error/a-crash.csv"]
    report = json.loads((folder / "error" / "a-crash.csv.report.json").read_text())
    assert "RuntimeError" in report["error"]
    snapshot = failures.snapshot()["drop-folder/hpg23"]
    assert snapshot["failed"] == 1 and snapshot["by_kind"] == {"RuntimeError": 1}

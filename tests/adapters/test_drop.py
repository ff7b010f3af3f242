"""Drop folders: files move to done/ or error/ with a report beside them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.adapters.labexport.drop import scan_once, start_drop_folders
from gateway.adapters.loader import Network
from gateway.store.sql import SqlStore
from tests.adapters.conftest import KEY, csv_of
from tests.adapters.test_labexport import GOOD, ROWS


def test_a_good_file_goes_to_done_and_a_bad_one_to_error_with_reports(
        tmp_path: Path, store: SqlStore, network: Network) -> None:
    folder = tmp_path / "drop" / "cf-lanzani"
    folder.mkdir(parents=True)
    (folder / "good.csv").write_bytes(csv_of(GOOD))
    (folder / "mixed.csv").write_bytes(csv_of(*ROWS))
    (folder / "notes.doc").write_bytes(b"ignored")
    moved = scan_once(tmp_path, store, network, KEY)
    assert sorted(p.relative_to(folder).as_posix() for p in moved) == [
        "done/good.csv", "error/mixed.csv"]
    report = json.loads((folder / "error" / "mixed.csv.report.json").read_text())
    assert report["accepted"] == 3 and len(report["rejected"]) == 4
    assert (folder / "done" / "good.csv.report.json").exists()
    assert (folder / "notes.doc").exists()
    assert store.history("Observation", None, count=10)


def test_a_file_still_growing_waits_for_the_next_scan(
        tmp_path: Path, store: SqlStore, network: Network) -> None:
    folder = tmp_path / "drop" / "hpg23"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes(csv_of("7,,,,,2026-11-20,PCR,,,4,mg/L,,,,,"))
    sizes: dict[Path, int] = {}
    assert scan_once(tmp_path, store, network, KEY, sizes) == []
    assert [p.name for p in scan_once(tmp_path, store, network, KEY, sizes)] == ["a.csv"]


async def test_the_watcher_task_imports_a_dropped_file(
        tmp_path: Path, store: SqlStore, network: Network) -> None:
    task = start_drop_folders(tmp_path, store, network, KEY, interval=0.05)
    try:
        (tmp_path / "drop" / "hpg23" / "crp.csv").write_bytes(
            csv_of("7,,,,,2026-11-20,PCR,,,4,mg/L,,,,,"))
        done = tmp_path / "drop" / "hpg23" / "done" / "crp.csv.report.json"
        for _ in range(100):
            if done.exists():
                break
            await asyncio.sleep(0.05)
        assert json.loads(done.read_text())["accepted"] == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

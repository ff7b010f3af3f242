"""Drop folders: ``<data-dir>/drop/<site-id>/``. A file placed there is imported, then moved
to ``done/`` (every row accepted, or already imported) or ``error/`` (a row rejected or the
file unreadable) with ``<name>.report.json`` beside it. Polling, so it works on network
shares too; a file is taken only when its size has stopped changing.

Nothing stops on one bad file: whatever a file makes fail (a bug, the database, the disk)
moves it to ``error/`` with a report naming the failure, is logged by the file's sha256
prefix (a file name may carry a patient's name), counted in ``FailureCounters`` and the
watcher goes on with the next file, the next site and the next scan."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gateway.adapters.labexport.importer import import_export
from gateway.adapters.labexport.report import ImportReport
from gateway.adapters.loader import Network
from gateway.failures import FailureCounters
from gateway.store.base import Store

log = logging.getLogger(__name__)
OnReport = Callable[[str, ImportReport], None]
SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".xlsx"})


def drop_dirs(data_dir: Path, network: Network) -> dict[str, Path]:
    base = Path(data_dir) / "drop"
    dirs = {site: base / site for site in network.sites}
    for folder in dirs.values():
        for sub in ("", "done", "error"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    return dirs


def _move(path: Path, report: ImportReport) -> Path:
    target = path.parent / ("done" if report.ok or report.already_imported else "error")
    dest = target / path.name
    if dest.exists():
        dest = target / f"{path.stem}.{report.sha256[:8]}{path.suffix}"
    path.replace(dest)
    dest.with_name(dest.name + ".report.json").write_text(
        json.dumps(report.to_json(), indent=2), encoding="utf-8")
    return dest


def process_file(path: Path, site: str, store: Store, network: Network,
                 pseudonym_key: bytes, on_report: OnReport | None = None) -> Path:
    """Import one dropped file and move it; returns where it went (``on_report``: told
    the site and the import's report, for metrics)."""
    report = import_export(store, network, site, path.read_bytes(), path.name, pseudonym_key)
    if on_report is not None:
        on_report(site, report)
    dest = _move(path, report)
    log.info("drop folder %s: %s -> %s", site, report.sha256[:12], dest.parent.name)
    return dest


def _failed(path: Path, site: str, exc: Exception, failures: FailureCounters | None
            ) -> Path | None:
    """A file whose import raised: to ``error/`` with a report of the failure (type only)."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        digest = "unreadable"
    kind = type(exc).__name__
    log.error("drop folder %s: file %s failed (%s): moved to error/", site, digest[:12], kind)
    if failures is not None:
        failures.record(f"drop-folder/{site}", kind, f"sha256:{digest[:12]}",
                        datetime.now(UTC).isoformat(timespec="seconds"))
    report = ImportReport(path.name, site, digest,
                          error=f"the import failed ({kind}); the file was not imported")
    try:
        return _move(path, report)
    except OSError as move_exc:  # left in place: tried again at the next scan
        log.error("drop folder %s: file %s could not be moved (%s)", site, digest[:12],
                  type(move_exc).__name__)
        return None


def scan_once(data_dir: Path, store: Store, network: Network, pseudonym_key: bytes,
              sizes: dict[Path, int] | None = None,
              failures: FailureCounters | None = None,
              on_report: OnReport | None = None) -> list[Path]:
    """Process every stable file once (``sizes`` remembers sizes between scans; without it
    every file is taken at once). A file that fails goes to ``error/``; the scan goes on."""
    moved = []
    for site, folder in drop_dirs(data_dir, network).items():
        for path in _stable_files(folder, sizes):
            try:
                moved.append(process_file(path, site, store, network, pseudonym_key,
                                          on_report))
            except Exception as exc:  # noqa: BLE001 - one file never stops the watcher
                dest = _failed(path, site, exc, failures)
                if dest is not None:
                    moved.append(dest)
    return moved


def _stable_files(folder: Path, sizes: dict[Path, int] | None) -> list[Path]:
    stable = []
    for path in sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in SUFFIXES):
        size = path.stat().st_size
        if sizes is not None and sizes.get(path) != size:
            sizes[path] = size
            continue
        if sizes is not None:
            sizes.pop(path, None)
        stable.append(path)
    return stable


async def watch(data_dir: Path, store: Store, network: Network, pseudonym_key: bytes,
                interval: float = 2.0, failures: FailureCounters | None = None,
                on_report: OnReport | None = None) -> None:
    sizes: dict[Path, int] = {}
    while True:
        try:
            await asyncio.to_thread(scan_once, data_dir, store, network, pseudonym_key, sizes,
                                    failures, on_report)
        except Exception as exc:  # noqa: BLE001 - a folder gone, a full disk: scan again later
            log.error("drop folder scan failed (%s)", type(exc).__name__)
            if failures is not None:
                failures.record("drop-folder", type(exc).__name__, "scan")
        await asyncio.sleep(interval)


def start_drop_folders(data_dir: Path, store: Store, network: Network, pseudonym_key: bytes,
                       interval: float = 2.0, failures: FailureCounters | None = None,
                       on_report: OnReport | None = None) -> asyncio.Task[None]:
    """Start watching ``<data_dir>/drop/<site>/`` (call inside the running loop; cancel the
    task to stop)."""
    drop_dirs(data_dir, network)
    return asyncio.create_task(watch(data_dir, store, network, pseudonym_key, interval,
                                     failures, on_report), name="drop-folders")

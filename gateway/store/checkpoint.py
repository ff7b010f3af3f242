"""SQLite WAL checkpoints off the write path.

Left to SQLite, the commit that pushes the WAL past ``wal_autocheckpoint`` pages copies
the whole WAL into the database file before it returns: every few thousand messages one
ingest group waits ~100 ms, and every sender with it (the p99 of the ACK latency). Here a
background thread checkpoints (PASSIVE: it never blocks a writer or a reader) whenever
the WAL has grown by ``threshold`` bytes; SQLite's own automatic checkpoint stays as a
safety net at a much larger size (``SAFETY_PAGES``), in case this thread cannot keep up.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

log = logging.getLogger(__name__)

SAFETY_PAGES = 50_000  # ~200 MB of WAL: SQLite's own checkpoint, if this thread lags
THRESHOLD = 8 * 1024 * 1024


class Checkpointer:
    """One thread per SQLite database file of a store; ``stop`` joins it."""

    def __init__(self, path: str, *, interval: float = 0.2, threshold: int = THRESHOLD) -> None:
        self.path, self.interval, self.threshold = path, interval, threshold
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                        daemon=True)
        self.checkpoints = 0

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _wal_size(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                               check_same_thread=False)
        try:
            while not self._stop.wait(self.interval):
                if self._wal_size() >= self.threshold:
                    self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # e.g. busy: next time
            log.debug("WAL checkpoint skipped: %s", type(exc).__name__)

"""SQLite WAL checkpoints on their own thread: the WAL's pages reach the database file
without a writer doing it, and closing the store stops the thread."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from gateway.store.checkpoint import Checkpointer
from gateway.store.sql import SqlStore


def test_the_checkpointer_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    store = SqlStore(f"sqlite:///{path}")
    store.migrate()
    try:
        checkpointer = store._checkpointer
        assert checkpointer is not None and checkpointer._thread.is_alive()
        checkpointer.threshold = 64 * 1024  # small, for the test
        before = os.path.getsize(path)
        with store.transaction() as tx:
            tx.put_many([{"resourceType": "Observation", "id": f"o{i}", "status": "final",
                          "note": [{"text": "x" * 2000}]} for i in range(300)])
        assert os.path.getsize(f"{path}-wal") > 64 * 1024  # the commit did not checkpoint
        # a checkpoint that ran while the transaction was still writing (a slow machine)
        # copied nothing: wait for the pages themselves, not for the first checkpoint
        deadline = time.monotonic() + 20
        while os.path.getsize(path) <= before + 300 * 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        # the file grows while the checkpoint runs; it is counted once the pragma returns
        while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.checkpoints > 0
        assert os.path.getsize(path) > before + 300 * 2000  # the pages are in the file now
        with sqlite3.connect(path) as conn:  # and readable by anyone
            assert conn.execute("SELECT count(*) FROM resource").fetchone() == (300,)
    finally:
        store.close()
    assert store._checkpointer is None and not checkpointer._thread.is_alive()


def test_a_checkpoint_that_cannot_run_is_skipped_not_fatal(tmp_path: Path) -> None:
    checkpointer = Checkpointer(str(tmp_path / "missing" / "x.db"))
    conn = sqlite3.connect(":memory:")
    conn.close()
    checkpointer.checkpoint(conn)  # a closed connection: logged at debug, nothing raised
    assert checkpointer.checkpoints == 0

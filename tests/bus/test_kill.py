"""kill -9 of an edge process mid-stream, restart: every committed outbox row reaches the hub."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.bus.components import make_projector
from gateway.bus.kafka import KafkaBus
from gateway.bus.settings import BusSettings
from gateway.store.sql import SqlStore
from tests.bus.busutil import versions, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("edge_process.py")


def edge(url: str, settings: BusSettings, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), url, settings.kafka_bootstrap or "",
         settings.topic_prefix, mode], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(SCRIPT.parents[2])})


async def test_every_row_committed_before_a_kill_9_reaches_the_hub_after_restart(
        tmp_path: Path, kafka_settings: BusSettings, hub_store: SqlStore) -> None:
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    proc = edge(url, kafka_settings, "write")
    assert proc.stdout is not None
    for line in proc.stdout:  # let it commit and relay for a while
        if line.strip() == "committed 200":
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    edge_store = SqlStore(url)
    assert edge_store.outbox_pending() > 0  # the kill left unpublished rows behind
    restarted = edge(url, kafka_settings, "drain")
    assert restarted.wait(60) == 0
    assert edge_store.outbox_pending() == 0
    bus = KafkaBus(kafka_settings)
    projector = make_projector(kafka_settings, hub_store, bus)
    await projector.start()
    expected = versions(edge_store)
    assert len(expected) >= 400
    assert await wait_until(lambda: versions(hub_store) == expected, deadline=30)
    await projector.stop()
    await bus.stop()
    edge_store.close()

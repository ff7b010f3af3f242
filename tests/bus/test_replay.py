"""``gateway replay``: stored messages re-mapped; only changed resources reach the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.cli.main import main
from gateway.store.base import InboxRecord
from gateway.store.sql import SqlStore
from tests.bus.busutil import ingest_site_samples
from tests.support import migrated_store

SAMPLE = Path(EXAMPLE_SITES, "samples", "hpg23", "release-or-monitoring.hl7")


def args(tmp_path: Path, *extra: str) -> list[str]:
    return ["replay", "--data-dir", str(tmp_path), "--database-url",
            f"sqlite:///{tmp_path / 'edge.db'}", *extra]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with migrated_store(f"sqlite:///{tmp_path / 'edge.db'}") as store:
        yield store


def failed_earlier(store: SqlStore) -> None:
    """The hpg23 sample as stored when the site's mapping still failed on it (AE)."""
    with store.transaction() as tx:
        tx.inbox_add(InboxRecord("LAB", "HPG23", "OLD-0001", SAMPLE.read_bytes(),
                                 "2026-11-20T08:00:00.000Z", "mllp", site="hpg23",
                                 status="error", error="OBX[1]-3 unmapped (old site file)"))


def test_a_message_that_failed_earlier_is_re_mapped_and_its_resources_created(
        tmp_path: Path, store: SqlStore, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pseudonym.key").write_bytes(b"k" * 32)
    failed_earlier(store)
    assert main(args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "messages re-mapped: 1\n" in out and "errors: 0\n" in out
    changed = int(out.split("resources changed: ")[1].split("\n")[0])
    # + the cohort Group of each study the message touched (the store derives them)
    cohorts = len(store.search("Group", []).resources)
    assert changed > 0 and store.outbox_pending() == changed + cohorts
    [record] = store.inbox_list(site="hpg23")
    assert record.status == "processed" and record.resource_refs


def test_replaying_unchanged_messages_adds_no_version_and_no_bus_record(
        tmp_path: Path, store: SqlStore, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pseudonym.key").write_bytes(b"k" * 32)
    ingest_site_samples(store)  # same key as the edge used
    before = store.outbox_pending()
    assert main(args(tmp_path, "--status", "all")) == 0
    out = capsys.readouterr().out
    assert "messages re-mapped: 9\n" in out and "resources changed: 0\n" in out
    assert store.outbox_pending() == before


def test_site_and_since_narrow_what_is_replayed(
        tmp_path: Path, store: SqlStore, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pseudonym.key").write_bytes(b"k" * 32)
    ingest_site_samples(store)
    assert main(args(tmp_path, "--status", "all", "--site", "hsr")) == 0
    assert "messages re-mapped: 1\n" in capsys.readouterr().out
    assert main(args(tmp_path, "--status", "all", "--since", "2999-01-01")) == 0
    assert "messages re-mapped: 0\n" in capsys.readouterr().out

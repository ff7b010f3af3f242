"""Replay re-keys what an earlier build stored: results written under ids the current
mapping no longer produces are deleted (one current Observation per result), unless a later
message wrote them since. Both databases."""

from __future__ import annotations

import pytest

from gateway.adapters.loader import load_network
from gateway.errors import Gone
from gateway.ingest import IngestService
from gateway.mapping import observation
from gateway.store.sql import SqlStore
from tests.support import process
from tests.test_ingest import oru

OLD_BUILD_KEY = "http://loinc.org|1988-5"  # what ids were made of: the mapped code


@pytest.fixture
def service(store: SqlStore) -> IngestService:
    return IngestService(store, load_network(), b"k" * 32)


def old_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observation, "code_as_sent", lambda obx, hit=None: OLD_BUILD_KEY)


def current(store: SqlStore, cid: str) -> list[str]:
    record = store.inbox_find("LAB", "HPG23", cid)
    assert record is not None
    return [r.rsplit("/_history/", 1)[0] for r in record.resource_refs
            if r.startswith("Observation/")]


def is_deleted(store: SqlStore, ref: str) -> bool:
    rtype, rid = ref.split("/")
    try:
        store.read(rtype, rid)
    except Gone:
        return True
    return False


def test_a_replay_deletes_the_observation_an_earlier_build_stored_under_a_mapped_code_id(
        service: IngestService, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        old_build(m)
        process(service, oru("RK1"), "mllp")
    [old] = current(store, "RK1")
    record = store.inbox_find("LAB", "HPG23", "RK1")
    assert record is not None

    outcome = service.replay(record)
    [new] = current(store, "RK1")
    assert outcome.status == "processed" and outcome.retired == 1
    assert new != old and is_deleted(store, old)
    assert len(store.search("Observation", [("code", "http://loinc.org|1988-5")]).resources) == 1
    # a second replay finds nothing stale
    again = store.inbox_find("LAB", "HPG23", "RK1")
    assert again is not None and service.replay(again).retired == 0


def test_a_replay_keeps_an_old_id_that_a_later_message_wrote_since(
        service: IngestService, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        old_build(m)
        process(service, oru("RK2", filler="SAME"), "mllp")
        process(service, oru("RK3", value="14.5", filler="SAME"), "mllp")  # correction
    [old] = current(store, "RK2")
    first = store.inbox_find("LAB", "HPG23", "RK2")
    assert first is not None and service.replay(first).retired == 0
    assert not is_deleted(store, old)  # version 2 is RK3's: RK3's replay retires it
    later = store.inbox_find("LAB", "HPG23", "RK3")
    assert later is not None and service.replay(later).retired == 1
    assert is_deleted(store, old)
    [obs] = store.search("Observation", [("code", "http://loinc.org|1988-5")]).resources
    assert obs["valueQuantity"]["value"] == 14.5


def test_replaying_an_imported_lab_export_retires_the_observation_keyed_by_the_mapped_code(
        service: IngestService, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.adapters.labexport import build
    from gateway.adapters.labexport.importer import import_export
    from tests.adapters.conftest import csv_of
    from tests.adapters.test_labexport import GOOD

    network = service.network
    with monkeypatch.context() as m:  # the earlier build: the id from the mapped coding
        m.setattr(build, "_observation_key", lambda row, subject: (
            subject, (row.code or row.local).system, (row.code or row.local).code,
            row.collected_at or row.performed_at or ""))
        report = import_export(store, network, "cf-lanzani", csv_of(GOOD), "qc.csv",
                               service.key)
    assert report.accepted == 1
    [record] = store.inbox_list(site="cf-lanzani")
    [old] = [r.rsplit("/_history/", 1)[0] for r in record.resource_refs
             if r.startswith("Observation/")]

    outcome = service.replay(record)
    assert outcome.status == "processed" and outcome.retired == 1
    assert is_deleted(store, old)
    [again] = store.inbox_list(site="cf-lanzani")
    [new] = [r.rsplit("/_history/", 1)[0] for r in again.resource_refs
             if r.startswith("Observation/")]
    assert new != old and not is_deleted(store, new)
    assert service.replay(again).retired == 0  # nothing stale the second time

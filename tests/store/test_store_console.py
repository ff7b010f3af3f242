"""The console's queries (``gateway.store.console``) on SQLite and PostgreSQL: counts per
site, outcome and hour, ACK latencies, the last message, the unmapped-codes rows."""

from __future__ import annotations

from gateway.store.base import InboxFilter, InboxRecord
from gateway.store.console import (
    messages_page,
    network_activity,
    results_per_week,
    sites_of,
    unmapped_codes,
)
from gateway.store.sql import SqlStore

UNMAPPED = {"resourceType": "OperationOutcome", "issue": [
    {"severity": "warning", "code": "code-invalid", "location": ["OBX[2]-3"]},
    {"severity": "warning", "code": "code-invalid", "location": ["OBX[3]-3"]}]}


def _record(n: int, site: str, status: str, received: str, ack_ms: int,
            report: dict[str, object] | None = None) -> InboxRecord:
    return InboxRecord("LIS", site.upper(), f"C{n}", b"MSH|...", received, site=site,
                       message_type="ORU^R01", status=status, ack_ms=ack_ms, report=report,
                       unmapped=[("ZZ1", "L"), ("ZZ2", "L")] if report else [])


def test_network_activity_counts_by_site_outcome_and_hour(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.inbox_add(_record(1, "hpg23", "processed", "2026-12-03T09:10:00Z", 10, UNMAPPED))
        tx.inbox_add(_record(2, "hpg23", "processed", "2026-12-03T10:20:00Z", 30))
        tx.inbox_add(_record(3, "hpg23", "error", "2026-12-03T10:40:00Z", 50))
        tx.inbox_add(_record(4, "hsr", "rejected", "2026-12-02T08:00:00Z", 5))  # > 24 h ago
        tx.inbox_add(_record(5, "hsr", "processed", "2026-12-01T08:00:00Z", 5))
    found = network_activity(store, ["hpg23", "hsr", "polimi"],
                             since_24h="2026-12-02T11:00:00.000Z",
                             since_hour="2026-12-03T10:00:00.000Z",
                             since_today="2026-12-02T23:00:00.000Z")
    hpg23 = found["hpg23"]
    assert hpg23.today == {"AA": 2, "AE": 1} and hpg23.last_hour == {"AA": 1, "AE": 1}
    assert hpg23.hours == {"2026-12-03T09": [1, 0], "2026-12-03T10": [2, 1]}
    assert sorted(hpg23.ack_ms) == [10, 30, 50] and hpg23.percentile(0.5) == 30
    assert hpg23.error_rate == 1 / 3
    assert hpg23.last_message == "2026-12-03T10:40:00.000Z"
    assert found["hsr"].total_24h == 0 and found["hsr"].last_message == "2026-12-02T08:00:00.000Z"
    assert found["polimi"].last_message is None and found["polimi"].error_rate is None
    [unmapped] = list(unmapped_codes(store))
    assert unmapped == ("hpg23", "mllp", "2026-12-03T09:10:00.000Z", [["ZZ1", "L"], ["ZZ2", "L"]])
    page = messages_page(store, InboxFilter(), sites=frozenset({"hsr"}), before=None, limit=10)
    assert [e.control_id for e in page] == ["C4", "C5"]


STUDY_TAG = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"


def _observation(n: int, when: str, study: str = "s1") -> dict[str, object]:
    return {"resourceType": "Observation", "id": f"o{n}", "status": "final",
            "code": {"text": "CRP"}, "effectiveDateTime": when,
            "extension": [{"url": STUDY_TAG,
                           "valueReference": {"reference": f"ResearchStudy/{study}"}}]}


def test_a_subjects_sites_and_a_studys_results_per_week(store: SqlStore) -> None:
    store.bulk_put([
        {"resourceType": "Organization", "id": "org-hsr",
         "identifier": [{"system": "urn:plagencell:site", "value": "hsr"}]},
        {"resourceType": "ResearchSubject", "id": "rs1", "status": "on-study",
         "study": {"reference": "ResearchStudy/s1"},
         "individual": {"reference": "Patient/p1"}},
        {"resourceType": "Provenance", "id": "pv1", "recorded": "2026-11-02T10:00:00Z",
         "target": [{"reference": "ResearchSubject/rs1/_history/1"}],
         "agent": [{"who": {"reference": "Organization/org-hsr"}}]},
        # Monday 2026-11-02 and Sunday 2026-11-08: one week; 2026-11-09: the next one;
        # 2026-10-01: before the window; o5 another study's
        _observation(1, "2026-11-02T08:00:00Z"), _observation(2, "2026-11-08T23:00:00Z"),
        _observation(3, "2026-11-09T00:30:00Z"), _observation(4, "2026-10-01T08:00:00Z"),
        _observation(5, "2026-11-03T08:00:00Z", study="s2")])
    assert sites_of(store, "ResearchSubject", ["rs1", "rs-unknown"]) == {"rs1": {"hsr"}}
    week = 7 * 86_400_000
    monday = 1_793_577_600_000  # 2026-11-02T00:00:00Z
    assert results_per_week(store, "s1", since_ms=monday - week) == {monday: 2,
                                                                     monday + week: 1}

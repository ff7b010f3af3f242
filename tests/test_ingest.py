"""The group commit of ``IngestService``: several messages in one transaction, each in its
own savepoint, on both databases."""

from __future__ import annotations

import pytest

from gateway.adapters.loader import load_network
from gateway.errors import StoreError
from gateway.ingest import IngestService, Job, Outcome
from gateway.store.sql import SqlStore
from gateway.store.tx import SqlTransaction

# A monitoring result from the Bergamo lab. What matters: MSH-4 HPG23 (a known site), MSH-10,
# PID-3 (MRN, and in some messages the codice fiscale, NNITA), OBX-5 an NM value.
ORU = ("MSH|^~\\&|LAB|HPG23|GATEWAY|PLAGENCELL|20261127101500+0100||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
       "PID|1||{pid3}||Rossi^Mario||19800101|M\r"
       "OBR|1||{filler}^LAB|1988-5^CRP^LN|||20261127080000\r"
       "OBX|1|NM|1988-5^C reactive protein^LN||{value}|mg/L^mg/L^UCUM|0-5|H|||F|||20261127080000\r")
MRN_AND_CF = "MRN77^^^HPG23^MR~RSSMRA80A01F205X^^^MEF^NNITA"
MRN_ONLY = "MRN77^^^HPG23^MR"


def oru(cid: str, *, value: str = "12.5", pid3: str = MRN_AND_CF, filler: str = "") -> bytes:
    return ORU.format(cid=cid, value=value, pid3=pid3, filler=filler or f"F{cid}").encode()


@pytest.fixture
def service(store: SqlStore) -> IngestService:
    return IngestService(store, load_network(), b"k" * 32)


def run(service: IngestService, *messages: bytes) -> list[Outcome]:
    out: list[Outcome] = []
    service._run_group([Job(m, "mllp", out.append) for m in messages])
    return out


def patient_of(store: SqlStore, cid: str) -> str:
    record = store.inbox_find("LAB", "HPG23", cid)
    assert record is not None
    return next(r.split("/")[1] for r in record.resource_refs if r.startswith("Patient/"))


def test_a_failing_message_leaves_the_others_of_its_group_stored(
        service: IngestService, store: SqlStore) -> None:
    outcomes = run(service, oru("G1"), oru("G2", value="not-a-number"), oru("G3"))
    assert [o.status for o in outcomes] == ["processed", "error", "processed"]
    assert [o.ack_code for o in outcomes] == ["AA", "AE", "AA"]
    for cid, status in (("G1", "processed"), ("G2", "error"), ("G3", "processed")):
        record = store.inbox_find("LAB", "HPG23", cid)
        assert record is not None and record.status == status
    assert store.inbox_find("LAB", "HPG23", "G2").resource_refs == []  # type: ignore[union-attr]
    assert outcomes[0].changed > 0 and outcomes[2].changed > 0


def test_a_message_twice_in_one_group_and_again_later_has_one_effect(
        service: IngestService, store: SqlStore) -> None:
    first, twin = run(service, oru("D1"), oru("D1"))
    [later] = run(service, oru("D1"))
    assert first.status == "processed" and twin is first
    assert later.status == "duplicate" and later.responses == first.responses
    assert later.inbox_id == first.inbox_id


def test_a_link_learned_by_one_message_serves_the_next_one_of_the_same_group(
        service: IngestService, store: SqlStore) -> None:
    # L1 brings MRN + codice fiscale (the link MRN → fiscal-code pseudonym is learned);
    # L2, in the same group, only the MRN: it must land on the same Patient
    outcomes = run(service, oru("L1"), oru("L2", pid3=MRN_ONLY))
    assert [o.status for o in outcomes] == ["processed", "processed"]
    assert patient_of(store, "L2") == patient_of(store, "L1")


def test_messages_of_one_group_each_get_their_own_versions(
        service: IngestService, store: SqlStore) -> None:
    run(service, oru("V1", filler="SAME"), oru("V2", value="13.5", filler="SAME"))
    second = store.inbox_find("LAB", "HPG23", "V2")
    assert second is not None
    observation = next(r for r in second.resource_refs if r.startswith("Observation/"))
    assert observation.endswith("/_history/2")
    assert store.read("Observation", observation.split("/")[1])["valueQuantity"][  # type: ignore[index]
        "value"] == 13.5


def test_a_group_write_that_fails_is_redone_message_by_message(
        service: IngestService, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise StoreError("database error: simulated")

    monkeypatch.setattr(IngestService, "commit_group", broken)
    outcomes = run(service, oru("F1"), oru("F2", value="x"), oru("F3"))
    assert [o.status for o in outcomes] == ["processed", "error", "processed"]
    assert store.inbox_find("LAB", "HPG23", "F3").status == "processed"  # type: ignore[union-attr]


def test_a_message_the_database_refuses_leaves_the_others_of_its_group_stored(
        service: IngestService, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    [first] = run(service, oru("C2"))
    # the duplicate check misses C2 (as when another edge process stored it a moment ago):
    # its inbox row then breaks the unique constraint inside the group
    monkeypatch.setattr(SqlTransaction, "inbox_find_many", lambda self, keys: {})
    outcomes = run(service, oru("C1"), oru("C2"), oru("C3"))
    assert [o.status for o in outcomes] == ["processed", "refused", "processed"]
    assert outcomes[1].ack_code == "AE"
    for cid in ("C1", "C3"):
        assert store.inbox_find("LAB", "HPG23", cid).status == "processed"  # type: ignore[union-attr]
    assert store.inbox_find("LAB", "HPG23", "C2").id == first.inbox_id  # type: ignore[union-attr]


def test_each_message_of_a_group_gets_its_own_inbox_record(
        service: IngestService, store: SqlStore) -> None:
    """The group's inbox rows go in as one statement: every outcome still names its own."""
    cids = [f"R{n}" for n in range(12)]
    outcomes = run(service, *(oru(cid, pid3=f"MRN{n}^^^HPG23^MR") for n, cid in enumerate(cids)))
    assert [o.status for o in outcomes] == ["processed"] * 12
    assert len({o.inbox_id for o in outcomes}) == 12
    for cid, outcome in zip(cids, outcomes, strict=True):
        assert outcome.inbox_id is not None
        record = store.inbox_get(outcome.inbox_id)
        assert record is not None and record.control_id == cid and record.status == "processed"
        assert record.ack is not None and f"MSA|AA|{cid}".encode() in record.ack

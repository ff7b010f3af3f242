"""The store's ``restrict=`` on both databases, at the seam other endpoints build on
(Bulk export, $everything, ViewDefinitions): read, vread, history and search agree with
the rule modelled in tests/api/access_data.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.security.access import Restriction, restriction_of
from gateway.security.principal import ANONYMOUS, Principal
from gateway.store.sql import SqlStore
from tests.api.access_data import DATA, TYPES, visible_keys
from tests.api.access_support import load

STUDY_A = Restriction(studies=frozenset({"study-a"}))


@pytest.fixture
def loaded(store: SqlStore) -> Iterator[SqlStore]:
    load(store)
    yield store


def test_an_unrestricted_caller_has_no_restriction() -> None:
    assert restriction_of(ANONYMOUS) is None
    assert restriction_of(Principal("reader", frozenset({"system/*.rs"}))) is None
    restricted = restriction_of(Principal("a", studies=frozenset({"study-a"})))
    assert restricted == STUDY_A


def test_a_restriction_must_restrict_something() -> None:
    with pytest.raises(ValueError, match="restricts studies, sites or both"):
        Restriction()


def test_read_and_vread_answer_none_for_what_is_hidden(loaded: SqlStore) -> None:
    allowed = visible_keys(["study-a"], None)
    for resource in DATA:
        key = f"{resource['resourceType']}/{resource['id']}"
        read = loaded.read(resource["resourceType"], resource["id"], restrict=STUDY_A)
        vread = loaded.vread(resource["resourceType"], resource["id"], 1, restrict=STUDY_A)
        assert (read is not None) == (vread is not None) == (key in allowed), key


def test_a_deleted_resource_is_absent_not_gone_for_a_restricted_reader(
        loaded: SqlStore) -> None:
    with loaded.transaction() as tx:
        tx.delete("Observation", "o1")
    assert loaded.read("Observation", "o1", restrict=STUDY_A) is None
    assert loaded.vread("Observation", "o1", 1, restrict=STUDY_A) is None
    assert loaded.history_versions("Observation", "o1", restrict=STUDY_A) == []


@pytest.mark.parametrize(("studies", "sites"), [(["study-b"], None), (None, ["site2"]),
                                                (["study-a"], ["site1"])])
def test_history_and_search_list_exactly_the_visible_resources(
        loaded: SqlStore, studies: list[str] | None, sites: list[str] | None) -> None:
    restriction = Restriction(None if studies is None else frozenset(studies),
                              None if sites is None else frozenset(sites))
    allowed = visible_keys(studies, sites)
    history = {f"{v.resource_type}/{v.id}"
               for v in loaded.history_versions(None, None, count=500, restrict=restriction)}
    found = {f"{t}/{r['id']}" for t in TYPES
             for r in loaded.search(t, [("_count", "500")], restrict=restriction).resources}
    assert history == found == allowed


def test_a_transaction_tells_what_its_writer_may_see(loaded: SqlStore) -> None:
    with loaded.transaction() as tx:
        assert tx.visible(STUDY_A, "Patient", "p3")
        assert not tx.visible(STUDY_A, "Patient", "p2")
        assert not tx.visible(STUDY_A, "Patient", "missing")


def test_visible_ids_selects_the_visible_ids_of_a_type(loaded: SqlStore) -> None:
    from gateway.store.restrict import visible_ids

    with loaded.engine.connect() as conn:
        ids = {row[0] for row in conn.execute(visible_ids(STUDY_A, "Observation"))}
    assert {f"Observation/{i}" for i in ids} == {
        k for k in visible_keys(["study-a"], None) if k.startswith("Observation/")}


def test_a_deleted_or_missing_patient_named_by_a_subject_is_not_listed(
        loaded: SqlStore) -> None:
    with loaded.transaction() as tx:
        tx.delete("Patient", "p1")  # rs-1a still names it
        tx.put({"resourceType": "ResearchSubject", "id": "rs-ghost", "status": "on-study",
                "study": {"reference": "ResearchStudy/study-a"},
                "individual": {"reference": "Patient/ghost"}})
    listed = loaded.search("Patient", [], restrict=STUDY_A)
    assert [r["id"] for r in listed.resources] == ["p3"]
    counted = loaded.search("Patient", [("_summary", "count")], restrict=STUDY_A)
    assert counted.total == 1

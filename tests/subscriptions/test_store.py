"""The change queue and fan-out on the store (``gateway.store.subscriptions``,
``gateway.subscriptions.matching``), on SQLite and PostgreSQL: what the trigger queues, what
matches, in which order, and what a restricted owner is never queued."""

from __future__ import annotations

from typing import Any

from gateway.store.sql import SqlStore
from gateway.store.subscriptions import (
    SubscriptionRow,
    delivered,
    insert_subscription,
    pending,
    replace_subscription,
    take_changes,
)
from gateway.subscriptions.matching import fan_out
from tests.api.access_data import obs, patient, study, subject
from tests.subscriptions.support import subscription

UNRESTRICTED = {"client_id": "c", "anonymous": False, "studies": None, "sites": None}


def watch(store: SqlStore, id: str, criteria: str, principal: dict[str, Any] | None = None,
          status: str = "active") -> SubscriptionRow:
    row = SubscriptionRow(id=id, res_type=criteria.partition("?")[0], status=status,
                          client_id="c", principal=principal or UNRESTRICTED,
                          content=subscription("http://h/x", criteria=criteria))
    insert_subscription(store, row)
    return row


def put(store: SqlStore, *resources: dict[str, Any]) -> None:
    with store.transaction() as tx:
        for resource in resources:
            tx.put(resource)


def test_only_watched_types_are_queued_and_nothing_before_a_subscription(
        store: SqlStore) -> None:
    put(store, patient("p1", "female", "1970-01-01"))
    put(store, obs("o0", "p1", "718-7", 1.0, "2026-11-01"))
    assert take_changes(store) == []  # nobody watches yet: the trigger queues nothing
    watch(store, "s1", "Observation?code=718-7")
    put(store, patient("p2", "male", "1971-01-01"), obs("o1", "p1", "718-7", 2.0, "2026-11-01"))
    assert [(c.res_type, c.res_id, c.version_id) for c in take_changes(store)] == [
        ("Observation", "o1", 1)]


def test_matching_versions_become_notifications_in_order_and_the_queue_empties(
        store: SqlStore) -> None:
    watch(store, "s1", "Observation?code=718-7")
    watch(store, "s2", "Observation?code=2345-7")
    put(store, obs("o1", "p1", "718-7", 1.0, "2026-11-01"),
        obs("o2", "p1", "2345-7", 1.0, "2026-11-01"))
    put(store, obs("o1", "p1", "718-7", 2.0, "2026-11-01"))
    put(store, obs("o1", "p1", "718-7", 3.0, "2026-11-01"))
    assert fan_out(store) == {"s1", "s2"}
    assert take_changes(store) == []
    assert [(d.res_id, d.version_id) for d in pending(store, "s1")] == [
        ("o1", 1), ("o1", 2), ("o1", 3)]
    assert [(d.res_id, d.version_id) for d in pending(store, "s2")] == [("o2", 1)]
    delivered(store, [d.seq for d in pending(store, "s1")[:2]])
    assert [d.version_id for d in pending(store, "s1")] == [3]


def test_a_restricted_owner_is_never_queued_what_it_may_not_see(store: SqlStore) -> None:
    put(store, study("study-a", "2024-A"), study("study-b", "2024-B"),
        patient("p1", "female", "1970-01-01"), patient("p2", "male", "1971-01-01"),
        subject("rs-1a", "study-a", "p1"), subject("rs-2b", "study-b", "p2"))
    watch(store, "team-a", "Observation",
          {**UNRESTRICTED, "studies": ["study-a"]})
    watch(store, "all", "Observation")
    put(store, obs("o-a", "p1", "718-7", 1.0, "2026-11-01", "study-a"),
        obs("o-b", "p2", "718-7", 1.0, "2026-11-01", "study-b"),
        obs("o-p2", "p2", "718-7", 1.0, "2026-11-01"))  # untagged: its subject decides
    fan_out(store)
    assert [d.res_id for d in pending(store, "team-a")] == ["o-a"]
    assert sorted(d.res_id for d in pending(store, "all")) == ["o-a", "o-b", "o-p2"]


def test_turning_a_subscription_off_drops_its_queue_and_stops_queueing(
        store: SqlStore) -> None:
    row = watch(store, "s1", "Observation")
    put(store, obs("o1", "p1", "718-7", 1.0, "2026-11-01"))
    fan_out(store)
    assert len(pending(store, "s1")) == 1
    row.status = "off"
    assert replace_subscription(store, row, expected_version=1)
    assert pending(store, "s1") == []
    put(store, obs("o1", "p1", "718-7", 2.0, "2026-11-01"))
    assert take_changes(store) == []
    assert not replace_subscription(store, row, expected_version=1)  # it is at 2 now


def test_the_projectors_batch_writes_are_queued_too(store: SqlStore) -> None:
    """Role hub: the projector applies prepared batches (PostgreSQL: COPY); the trigger
    queues them like any write, versions of one resource in order."""
    watch(store, "s1", "Observation")
    versions = [{**obs("o1", "p1", "718-7", float(v), "2026-11-01"),
                 "meta": {"versionId": str(v), "lastUpdated": f"2026-11-01T10:00:0{v}.000Z"}}
                for v in (1, 2, 3)]
    versions.append({**obs("o2", "p1", "718-7", 1.0, "2026-11-01"),
                     "meta": {"versionId": "1", "lastUpdated": "2026-11-01T10:00:00.000Z"}})
    prepared = store.prepare_versions(versions)
    with store.transaction() as tx:
        assert tx.apply_versions(prepared) == 4
    fan_out(store)
    assert [(d.res_id, d.version_id) for d in pending(store, "s1")] in (
        [("o1", 1), ("o1", 2), ("o1", 3), ("o2", 1)], [("o2", 1), ("o1", 1), ("o1", 2), ("o1", 3)])


def test_notifications_follow_the_owners_current_registration(store: SqlStore) -> None:
    put(store, study("study-a", "2024-A"), study("study-b", "2024-B"),
        patient("p1", "female", "1970-01-01"), patient("p2", "male", "1971-01-01"),
        subject("rs-1a", "study-a", "p1"), subject("rs-2b", "study-b", "p2"))
    watch(store, "s1", "Observation")  # recorded unrestricted
    registered: dict[str, Any] = {"client_id": "c", "anonymous": False, "sites": None,
                                  "scopes": ["system/Observation.s"], "studies": ["study-a"]}
    put(store, obs("o-a", "p1", "718-7", 1.0, "2026-11-01", "study-a"),
        obs("o-b", "p2", "718-7", 1.0, "2026-11-01", "study-b"))
    fan_out(store, owners=lambda client: registered)  # narrowed to study A since
    assert [d.res_id for d in pending(store, "s1")] == ["o-a"]

    for now in ({**registered, "scopes": ["system/Patient.s"]}, None):  # no Observation.s;
        put(store, obs("o-a", "p1", "718-7", 2.0, "2026-11-01", "study-a"))  # unregistered
        fan_out(store, owners=lambda client, now=now: now)  # type: ignore[misc]
        assert [d.res_id for d in pending(store, "s1")] == ["o-a"]


def test_new_criteria_drop_what_the_old_ones_queued(store: SqlStore) -> None:
    row = watch(store, "s1", "Observation")
    put(store, obs("o1", "p1", "718-7", 1.0, "2026-11-01"))
    fan_out(store)
    row.content["criteria"] = "Observation?code=2345-7"
    assert replace_subscription(store, row, expected_version=1, drop_pending=True)
    assert pending(store, "s1") == []

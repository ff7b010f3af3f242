"""Subscriptions end to end: a running gateway fed over MLLP, a real HTTP receiver, the
Subscription made and read with fhirpy; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tests.subscriptions.receiver import Receiver
from tests.subscriptions.support import (
    fhir_client,
    ingest,
    result,
    start,
    subscription,
    wait_status,
)


def versions_by_resource(receiver: Receiver) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = defaultdict(list)
    for r in receiver.events():
        seen[r.path].append(int(r.json()["meta"]["versionId"]))
    return seen


async def test_full_resource_notifications_survive_a_receiver_that_is_down_for_a_while(
        tmp_path: Path, database_url: str) -> None:
    receiver = Receiver()
    gateway = await start(tmp_path, database_url, subscription_max_failures=1000)
    try:
        client = fhir_client(gateway)
        made = client.resource("Subscription", **subscription(
            receiver.url, headers=["Authorization: Bearer receiver-secret"]))
        await made.save()
        dead = client.resource("Subscription", **subscription("http://127.0.0.1:9/hook"))
        await dead.save()  # a receiver that never answers: only its own queue waits
        ended = client.resource("Subscription", **{
            **subscription(receiver.url), "end": "2020-01-01T00:00:00Z"})
        await ended.save()
        await wait_status(client, made.id, "active")
        await wait_status(client, ended.id, "off")  # its end has passed
        assert len(receiver.events("handshake")) == 1

        await ingest(gateway, *[result(n, f"A{n}{v}", f"{v}.5") for v in (1, 2)
                                for n in (1, 2, 3)])
        await receiver.wait_for(lambda got: len(versions_by_resource(receiver)) == 3 and all(
            vs[-1:] == [2] for vs in versions_by_resource(receiver).values()))

        receiver.down()
        await ingest(gateway, *[result(n, f"B{n}{v}", f"{v}.5") for v in (3, 4)
                                for n in (1, 2, 3)])
        failing = await wait_status(client, made.id, "active")
        for _ in range(200):  # a failed attempt is recorded on the resource
            if failing.get("error"):
                break
            failing = dict(await client.reference("Subscription", made.id).to_resource())
        assert "could not be reached" in failing["error"]
        receiver.up()
        await receiver.wait_for(lambda got: all(
            vs[-1:] == [4] for vs in versions_by_resource(receiver).values()))
        dead_now = await client.reference("Subscription", dead.id).to_resource()
        assert dead_now["status"] == "requested" and "handshake" in dead_now["error"]
    finally:
        await gateway.stop()
        receiver.down()
    seen = versions_by_resource(receiver)
    assert len(seen) == 3
    for path, versions in seen.items():
        assert path.startswith("/hook/Observation/")
        assert versions == sorted(versions), versions  # in order per resource
        assert set(versions) == {1, 2, 3, 4}  # nothing lost (at least once)
    first = receiver.events()[0]
    assert first.method == "PUT" and first.headers["authorization"] == "Bearer receiver-secret"
    assert first.headers["content-type"].startswith("application/fhir+json")
    assert first.json()["resourceType"] == "Observation"


async def test_an_error_subscription_keeps_its_notifications_across_a_restart_until_resumed(
        tmp_path: Path, database_url: str) -> None:
    receiver = Receiver()
    receiver.down()
    gateway = await start(tmp_path, database_url, subscription_max_failures=2)
    try:
        client = fhir_client(gateway)
        made = client.resource("Subscription", **subscription(receiver.url, payload=None,
                                                                heartbeat=1))
        await made.save()
        failed = await wait_status(client, made.id, "error")
        assert "handshake" in failed["error"] and "attempt 2" in failed["error"]
        await ingest(gateway, result(1, "E1", "1.5"))
    finally:
        await gateway.stop()
    receiver.up()
    gateway = await start(tmp_path, database_url, subscription_max_failures=2)
    try:
        client = fhir_client(gateway)
        stored = await wait_status(client, made.id, "error")
        assert receiver.received == []  # an error subscription waits for its owner
        stored["status"] = "requested"
        await client.resource("Subscription", **stored).save()
        await wait_status(client, made.id, "active")
        await receiver.wait_for(lambda got: receiver.events())
        await receiver.wait_for(lambda got: receiver.events("heartbeat"), seconds=10)
    finally:
        await gateway.stop()
        receiver.down()
    notified = receiver.events()[0]
    assert notified.method == "POST" and notified.body == b""  # no payload: no body
    assert notified.headers["x-subscription-id"] == made.id

"""``/fhir/Subscription`` on a gateway with a clients file: scopes (401/403), ownership,
bad input (400 naming the element, nothing stored), fhirpy as the client, a restricted
client notified only of what it may see, and the AuditEvent of a delivery; SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy.base.exceptions import ResourceNotFound

from gateway.runtime import Gateway
from gateway.security.principal import AUDIT
from gateway.store.subscriptions import get_subscription
from tests.api.access_data import obs, patient, study, subject
from tests.security.support import ApiClient, bearer, get_token, write_clients
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.support import fhir_client, start, subscription, wait_status

WRITER = ApiClient("writer", ["system/*.cruds", AUDIT])
OWNER = ApiClient("owner", ["system/Subscription.cruds", "system/Observation.s"])
OTHER = ApiClient("other", ["system/Subscription.cruds", "system/Observation.s"])
NO_SCOPE = ApiClient("no-scope", ["system/Observation.rs"])
NO_DATA = ApiClient("no-data", ["system/Subscription.cruds"])
STUDY_A = ApiClient("study-a-team", ["system/Subscription.cruds", "system/Observation.rs",
                                     "system/Group.s"], studies=["ResearchStudy/study-a"])
LOINC = "http://loinc.org"


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    clients = write_clients(tmp_path / "clients.yaml", WRITER, OWNER, OTHER, NO_SCOPE,
                            NO_DATA, STUDY_A)
    gw = await start(tmp_path, database_url, clients=clients)
    yield gw
    await gw.stop()


async def tokens(gateway: Gateway, *clients: ApiClient) -> list[str]:
    base = f"http://127.0.0.1:{gateway.http_port}"
    return [await get_token(base, c) for c in clients]


def http(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}/fhir")


async def test_subscriptions_need_a_token_and_the_subscription_scope(gateway: Gateway) -> None:
    (no_scope,) = await tokens(gateway, NO_SCOPE)
    body = subscription("http://127.0.0.1:9/hook")
    calls: list[tuple[str, str, Any]] = [("POST", "/Subscription", body),
                                         ("GET", "/Subscription", None),
                                         ("GET", "/Subscription/x", None),
                                         ("GET", "/Subscription/x/_history/1", None),
                                         ("PUT", "/Subscription/x", {**body, "id": "x"}),
                                         ("DELETE", "/Subscription/x", None)]
    async with http(gateway) as client:
        for method, path, json in calls:
            r = await client.request(method, path, json=json)
            assert r.status_code == 401, (method, path, r.text)
            r = await client.request(method, path, json=json, headers=bearer(no_scope))
            assert r.status_code == 403, (method, path, r.text)
            assert "Subscription" in r.json()["issue"][0]["diagnostics"]
        metadata = (await client.get("/metadata")).json()
    (entry,) = [r for r in metadata["rest"][0]["resource"] if r["type"] == "Subscription"]
    assert {"create", "read", "vread", "update", "delete", "search-type"} == {
        i["code"] for i in entry["interaction"]}


BAD = [  # (what is changed, the element the 400 names)
    ({"channel": {"type": "websocket", "endpoint": "http://127.0.0.1:9/h"}},
     "Subscription.channel.type"),
    ({"channel": {"type": "email", "endpoint": "mailto:x@example.org"}},
     "Subscription.channel.type"),
    ({"criteria": "Observation?no-such-parameter=1"}, "Subscription.criteria"),
    ({"criteria": "Observation?date=yesterday"}, "Subscription.criteria"),
    ({"criteria": "NoSuchType?code=1"}, "Subscription.criteria"),
    ({"criteria": "Observation?code=1&_sort=date"}, "Subscription.criteria"),
    ({"criteria": ""}, "Subscription.criteria"),
    ({"channel": {"type": "rest-hook", "endpoint": "ftp://127.0.0.1/h"}},
     "Subscription.channel.endpoint"),
    ({"channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/h",
                  "payload": "application/fhir+xml"}}, "Subscription.channel.payload"),
    ({"channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/h",
                  "header": ["no colon here"]}}, "Subscription.channel.header[0]"),
    ({"status": "error"}, "Subscription.status"),
]


async def test_bad_subscriptions_get_400_naming_the_element_and_nothing_is_stored(
        gateway: Gateway) -> None:
    owner, no_data = await tokens(gateway, OWNER, NO_DATA)
    good = subscription("http://127.0.0.1:9/hook")
    async with http(gateway) as client:
        for change, element in BAD:
            r = await client.post("/Subscription", json={**good, **change},
                                  headers=bearer(owner))
            assert r.status_code == 400, (change, r.text)
            (issue,) = r.json()["issue"]
            assert issue["expression"] == [element], (change, issue)
        r = await client.post("/Subscription", json=good, headers=bearer(no_data))
        assert r.status_code == 403  # may not search Observation: may not subscribe to it
        assert r.json()["issue"][0]["expression"] == ["Subscription.criteria"]
        found = await client.get("/Subscription", headers=bearer(owner))
        assert found.json()["total"] == 0
        r = await client.get("/Subscription", params={"bogus": "1"}, headers=bearer(owner))
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["bogus"]


async def test_fhirpy_creates_reads_searches_updates_and_deletes_its_own_subscriptions(
        gateway: Gateway) -> None:
    owner, other = await tokens(gateway, OWNER, OTHER)
    mine = fhir_client(gateway, owner)
    made = mine.resource("Subscription", **subscription(
        "http://127.0.0.1:9/hook", headers=["Authorization: Bearer s3cret"], status="off"))
    await made.save()
    assert made.id and made["meta"]["versionId"] == "1"
    read = await mine.reference("Subscription", made.id).to_resource()
    assert read["channel"]["header"] == ["Authorization: Bearer s3cret"]
    assert read["status"] == "off"
    found = await mine.resources("Subscription").search(status="off").fetch()
    assert [s.id for s in found] == [made.id]
    assert await mine.resources("Subscription").search(status="active").fetch() == []
    found = await mine.resources("Subscription").search(
        url="http://127.0.0.1:9/hook", type="rest-hook").fetch()
    assert [s.id for s in found] == [made.id]

    made["reason"] = "release results of study A"
    await made.save()
    again = await mine.reference("Subscription", made.id).to_resource()
    assert again["reason"] == "release results of study A"
    assert again["meta"]["versionId"] == "2"

    theirs = fhir_client(gateway, other)  # another client: nothing to see or touch
    assert await theirs.resources("Subscription").fetch() == []
    with pytest.raises(ResourceNotFound):
        await theirs.reference("Subscription", made.id).to_resource()
    async with http(gateway) as client:
        r = await client.delete(f"/Subscription/{made.id}", headers=bearer(other))
        assert r.status_code == 404
        r = await client.delete(f"/Subscription/{made.id}", headers=bearer(owner))
        assert r.status_code == 204
    with pytest.raises(ResourceNotFound):
        await mine.reference("Subscription", made.id).to_resource()


async def put(client: httpx.AsyncClient, token: str, *resources: dict[str, Any]) -> None:
    for resource in resources:
        r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource,
                             headers=bearer(token))
        assert r.status_code in (200, 201), r.text


async def test_a_restricted_client_is_notified_only_of_what_it_may_see(
        gateway: Gateway) -> None:
    writer, team = await tokens(gateway, WRITER, STUDY_A)
    receiver = Receiver()
    try:
        async with http(gateway) as client:
            await put(client, writer, study("study-a", "2024-A"), study("study-b", "2024-B"),
                      patient("p1", "female", "1970-01-01"), patient("p2", "male", "1971-01-01"),
                      subject("rs-1a", "study-a", "p1"), subject("rs-2b", "study-b", "p2"))
            r = await client.post("/Subscription", json=subscription(
                receiver.url, criteria=f"Observation?code={LOINC}|718-7"),
                headers=bearer(team))
            assert r.status_code == 201, r.text
            sub_id = r.json()["id"]
            await wait_status(fhir_client(gateway, team), sub_id, "active")
            # queued in this order: o-b (study B) is fanned out before o-a (study A)
            await put(client, writer,
                      obs("o-b", "p2", "718-7", 13.1, "2026-11-01", "study-b"),
                      obs("o-x", "p1", "2345-7", 5.0, "2026-11-01", "study-a"),
                      obs("o-a", "p1", "718-7", 12.9, "2026-11-01", "study-a"))
            await receiver.wait_for(lambda got: receiver.events())
            await asyncio.sleep(0.5)
            events = await client.get("/AuditEvent", params={
                "subtype": "subscription-notification"}, headers=bearer(writer))
    finally:
        receiver.down()
    assert [r.path for r in receiver.events()] == ["/hook/Observation/o-a"]
    (entry,) = events.json()["entry"]
    what = [e["what"].get("reference") for e in entry["resource"]["entity"]]
    assert what == [f"Subscription/{sub_id}", "Observation/o-a"]
    assert entry["resource"]["agent"][0]["who"]["identifier"]["value"] == "study-a-team"


async def test_a_client_removed_from_the_clients_file_has_its_subscription_turned_off(
        gateway: Gateway, tmp_path: Path) -> None:
    (owner,) = await tokens(gateway, OWNER)
    receiver = Receiver()
    try:
        made = fhir_client(gateway, owner).resource("Subscription", **subscription(
            receiver.url))
        await made.save()
        await wait_status(fhir_client(gateway, owner), made.id, "active")
        (tmp_path / "clients.yaml").unlink()  # the network team removes the client
        write_clients(tmp_path / "clients.yaml", WRITER, OTHER)
        assert gateway.reload_sites() is None
        assert gateway.hub_store is not None  # role all: subscriptions are the hub's
        for _ in range(400):
            row = get_subscription(gateway.hub_store, made.id)
            if row is not None and row.status == "off":
                break
            await asyncio.sleep(0.05)
    finally:
        receiver.down()
    assert row is not None and row.status == "off"
    assert row.error is not None and "no longer registered" in row.error

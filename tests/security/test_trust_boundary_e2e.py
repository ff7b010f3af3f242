"""The trust boundary end to end, as a deployment runs it: a clients file with real keys,
SMART Backend Services tokens from ``/auth/token``, data that arrived over a real MLLP
socket, per-study restrictions applied to what a token's client may see, the audit trail
recording all of it, and Bulk Data ``$export`` of a restricted client. On both databases.

Calori releases a CAR-T product for the EU CT study 2024-510233-27-00 (``cart-lymphoma``)
and San Raffaele monitors the same patient for it (both with CTI); Bergamo sends a CRP of
another patient, in no study.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.runtime import Gateway
from gateway.store.cohort import group_id
from tests.mapping.test_research import MONITORING, RELEASE
from tests.test_ingest import oru
from tests.test_runtime import msa, send

from .support import ApiClient, assertion, bearer, get_token, start, token_form, write_clients

CART = "cart-lymphoma"  # studies.yaml id of EU CT 2024-510233-27-00
READ_ALL = ["system/*.rs"]

STUDY_TEAM = ApiClient("cart-team", [*READ_ALL, "system/gateway.export"], studies=[CART])
OTHER_TEAM = ApiClient("carcik-team", READ_ALL, studies=["carcik-cd19"])
COORDINATOR = ApiClient("coordinator", [*READ_ALL, "system/gateway.audit"])


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    clients = write_clients(tmp_path / "clients.yaml", STUDY_TEAM, OTHER_TEAM, COORDINATOR)
    gw = await start(tmp_path, clients, database_url)
    try:
        for message in (RELEASE.encode(), MONITORING.encode(), oru("E2ENOSTUDY")):
            [ack] = await send(gw, message)
            assert msa(ack)[0] == "AA"
        yield gw
    finally:
        await gw.stop()


def base(gw: Gateway) -> str:
    return f"http://127.0.0.1:{gw.http_port}"


async def ids(http: httpx.AsyncClient, rtype: str) -> set[str]:
    r = await http.get(f"/fhir/{rtype}", params={"_count": "200"})
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", ())
            if e.get("search", {}).get("mode", "match") == "match"}


async def client_for(gw: Gateway, client: ApiClient) -> httpx.AsyncClient:
    token = await get_token(base(gw), client)
    return httpx.AsyncClient(base_url=base(gw), headers=bearer(token))


async def test_a_study_team_token_sees_its_study_and_not_the_patient_outside_it(
        gateway: Gateway) -> None:
    coordinator = await client_for(gateway, COORDINATOR)
    team = await client_for(gateway, STUDY_TEAM)
    other = await client_for(gateway, OTHER_TEAM)
    async with coordinator, team, other:
        everyone = {t: await ids(coordinator, t) for t in ("Patient", "Observation")}
        seen = {t: await ids(team, t) for t in ("Patient", "Observation")}
        assert len(everyone["Patient"]) == 2 and len(seen["Patient"]) == 1
        assert seen["Observation"] < everyone["Observation"]
        [outside] = everyone["Patient"] - seen["Patient"]
        assert (await team.get(f"/fhir/Patient/{outside}")).status_code == 404
        assert (await team.get(f"/fhir/Patient/{outside}/_history")).status_code == 404
        count = await team.get("/fhir/Observation", params={"_summary": "count"})
        assert count.json()["total"] == len(seen["Observation"])
        # a client of another study sees none of these people and results
        assert await ids(other, "Patient") == set()
        assert await ids(other, "Observation") == set()


async def test_every_request_of_the_boundary_is_in_the_audit_trail_for_the_auditor_only(
        gateway: Gateway) -> None:
    team = await client_for(gateway, STUDY_TEAM)
    coordinator = await client_for(gateway, COORDINATOR)
    async with team, coordinator:
        await team.get("/fhir/Observation", params={"_count": "5"})
        assert (await team.get("/fhir/AuditEvent")).status_code == 403
        async with httpx.AsyncClient(base_url=base(gateway)) as anonymous:
            assert (await anonymous.get("/fhir/Patient")).status_code == 401

        async def events(agent: str) -> list[dict[str, Any]]:
            r = await coordinator.get("/fhir/AuditEvent", params={"agent": agent})
            assert r.status_code == 200, r.text
            return [e["resource"] for e in r.json().get("entry", ())]

        for _ in range(50):  # the trail is written behind the answers
            team_events = await events(STUDY_TEAM.id)
            if len(team_events) >= 3:
                break
            await asyncio.sleep(0.1)
        outcomes = sorted(e["outcome"] for e in team_events)
        assert outcomes.count("0") >= 2 and "4" in outcomes  # token, search; the 403
        text = str(team_events)
        for private in ("ROSSI", "Rossi", "MARIO"):
            assert private not in text


async def test_a_refused_token_request_is_recorded_under_the_client_it_claims_if_known(
        gateway: Gateway) -> None:
    """An assertion signed with a stolen-name but wrong key is refused and recorded under
    the client it names (a brute force on one client shows in its trail); an assertion
    naming no client of the file is recorded as ``unknown-client``, never its text."""
    url = f"{base(gateway)}/auth/token"
    wrong_key = ApiClient("intruder", READ_ALL).key  # a fresh key of the same algorithm
    async with httpx.AsyncClient() as http:
        for signed in (assertion(STUDY_TEAM, url, key=wrong_key),
                       assertion(ApiClient("MARIO ROSSI", READ_ALL), url)):
            r = await http.post(url, data=token_form(signed, "system/*.rs"))
            assert r.status_code in (400, 401), r.text
    coordinator = await client_for(gateway, COORDINATOR)
    async with coordinator:
        refused: list[tuple[str, str]] = []
        for _ in range(50):  # the trail is written behind the answers
            r = await coordinator.get("/fhir/AuditEvent", params={"subtype": "110122"})
            refused = [(e["resource"]["agent"][0]["who"]["identifier"]["value"],
                        e["resource"]["outcome"]) for e in r.json().get("entry", ())
                       if e["resource"]["outcome"] != "0"]
            if len(refused) >= 2:
                break
            await asyncio.sleep(0.1)
    assert sorted(refused) == [(STUDY_TEAM.id, "4"), ("unknown-client", "4")]


@pytest.mark.parametrize("type_filter", [None, "Observation?status=final"])
async def test_a_study_team_exports_its_study_and_nothing_of_another(
        gateway: Gateway, type_filter: str | None) -> None:
    team = await client_for(gateway, STUDY_TEAM)
    other = await client_for(gateway, OTHER_TEAM)
    async with team, other:
        expected = await ids(team, "Observation")
        assert (await other.get("/fhir/$export", headers={"Prefer": "respond-async"})
                ).status_code == 403  # no export scope
        params = {"_type": "Observation,Patient"}
        if type_filter:  # a filter runs through the store's search: restricted there too
            params["_typeFilter"] = type_filter
        kick = await team.get("/fhir/$export", params=params,
                              headers={"Prefer": "respond-async"})
        assert kick.status_code == 202, kick.text
        status = kick.headers["content-location"]
        for _ in range(100):
            poll = await team.get(status)
            if poll.status_code == 200:
                break
            assert poll.status_code == 202
            await asyncio.sleep(0.1)
        manifest = poll.json()
        exported: dict[str, set[str]] = {}
        for output in manifest["output"]:
            body = (await team.get(output["url"])).text
            exported.setdefault(output["type"], set()).update(
                line.split('"id":"', 1)[1].split('"', 1)[0]
                for line in body.splitlines() if line)
        assert exported.get("Observation", set()) == expected
        assert len(exported.get("Patient", set())) == 1


async def test_a_study_team_finds_its_cohort_group_and_exports_it_but_no_other_group(
        gateway: Gateway) -> None:
    """research-data.md's first step for a study team: find the cohort Group of its study,
    then export it. A study-restricted client sees its studies' cohorts (members: its own
    subjects) and no other Group: another study's cohort is 404, on a read and on
    ``$export`` alike."""
    team = await client_for(gateway, STUDY_TEAM)
    coordinator = await client_for(gateway, COORDINATOR)
    async with team, coordinator:
        [study] = await ids(team, "ResearchStudy")
        found = await team.get("/fhir/Group", params={"research-study":
                                                      f"ResearchStudy/{study}"})
        assert found.status_code == 200, found.text
        [cohort] = [e["resource"] for e in found.json().get("entry", [])]
        assert cohort["id"] == group_id(study)
        members = {m["entity"]["reference"] for m in cohort["member"]}
        assert members == {f"Patient/{p}" for p in await ids(team, "Patient")} != set()
        assert await ids(team, "Group") == {cohort["id"]}
        others = await ids(coordinator, "Group") - {cohort["id"]}
        assert len(others) == 3  # the other studies of studies.yaml
        for other in others:
            assert (await team.get(f"/fhir/Group/{other}")).status_code == 404
            refused = await team.get(f"/fhir/Group/{other}/$export",
                                     headers={"Prefer": "respond-async"})
            assert refused.status_code == 404, refused.text
        kick = await team.get(f"/fhir/Group/{cohort['id']}/$export",
                              params={"_type": "Patient,Group", "pseudonymize": "study"},
                              headers={"Prefer": "respond-async"})
        assert kick.status_code == 202, kick.text
        for _ in range(100):
            poll = await team.get(kick.headers["content-location"])
            if poll.status_code == 200:
                break
            await asyncio.sleep(0.1)
        counts = {o["type"]: o["count"] for o in poll.json()["output"]}
        assert counts == {"Patient": len(members), "Group": 1}

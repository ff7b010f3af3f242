"""Per-study access end to end: the whole gateway with a clients file and real keys, two
clients restricted to different studies of studies.yaml, each with a real access token
(issue 10 item 4). The per-path coverage is in tests/api/test_fhir_access*.py; this shows
that the studies of the clients file reach the store's restriction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.adapters.loader import load_network
from gateway.mapping.research import known_study
from gateway.runtime import Gateway
from tests.security.support import ApiClient, bearer, get_token, start, write_clients
from tests.support import settled

CARCIK = ApiClient("carcik-dashboard", ["system/*.rs"], studies=["carcik-cd19"])
MSC = ApiClient("msc-registry", ["system/*.rs"], studies=["msc-gvhd"])
EVERYONE = ApiClient("sponsor", ["system/*.rs"])


def study(name: str) -> str:
    [found] = [s for s in load_network().studies if s.id == name]
    return str(known_study(found)["id"])


def enrolled(patient: str, study_name: str) -> list[dict[str, object]]:
    """A Patient enrolled in one study, with one untagged Observation."""
    return [
        {"resourceType": "Patient", "id": patient, "gender": "female"},
        {"resourceType": "ResearchSubject", "id": f"rs-{patient}", "status": "on-study",
         "study": {"reference": f"ResearchStudy/{study(study_name)}"},
         "individual": {"reference": f"Patient/{patient}"}},
        {"resourceType": "Observation", "id": f"obs-{patient}", "status": "final",
         "code": {"text": "CRP"}, "subject": {"reference": f"Patient/{patient}"}},
    ]


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    path = write_clients(tmp_path / "clients.yaml", CARCIK, MSC, EVERYONE)
    gw = await start(tmp_path, path, database_url)
    assert gw.store is not None
    with gw.store.transaction() as tx:
        for resource in enrolled("pc", "carcik-cd19") + enrolled("pm", "msc-gvhd"):
            tx.put(resource)
    await settled(gw)  # role all: written at the edge, served by the hub
    yield gw
    await gw.stop()


async def test_each_study_client_sees_its_study_and_404_for_the_other(
        gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=f"{base}/fhir") as http:
        for client, mine, theirs in ((CARCIK, "pc", "pm"), (MSC, "pm", "pc")):
            auth = bearer(await get_token(base, client))
            assert (await http.get(f"/Patient/{mine}", headers=auth)).status_code == 200
            hidden = await http.get(f"/Patient/{theirs}", headers=auth)
            assert hidden.status_code == 404
            assert hidden.json()["resourceType"] == "OperationOutcome"
            found = (await http.get("/Observation", headers=auth)).json()
            assert [e["resource"]["id"] for e in found.get("entry", [])] == [f"obs-{mine}"]
            studies = (await http.get("/ResearchStudy", headers=auth)).json()
            assert [e["resource"]["id"] for e in studies["entry"]] == [
                study("carcik-cd19" if client is CARCIK else "msc-gvhd")]
        auth = bearer(await get_token(base, EVERYONE))
        everything = (await http.get("/Observation", headers=auth)).json()
        assert {e["resource"]["id"] for e in everything["entry"]} == {"obs-pc", "obs-pm"}

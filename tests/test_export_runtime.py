"""``gateway serve`` (role all) end to end: a CRM enrolment and its off-study over MLLP keep
the study's cohort Group current, and the study is exported with Bulk Data over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.runtime import Gateway
from gateway.store.cohort import group_id
from tests.mapping.test_research import CSR_OFF, CSR_REGISTER, crm
from tests.support import settled
from tests.test_runtime import msa, send, start_gateway


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path, database_url)
    yield gw
    await gw.stop()


async def test_a_crm_enrolment_and_off_study_drive_the_cohort_and_its_export(
        gateway: Gateway) -> None:
    (ack,) = await send(gateway, crm("C01", CSR_REGISTER).encode())
    assert msa(ack)[0] == "AA"
    hub = await settled(gateway)  # the cohort is the hub's, derived as the projector writes
    (subject,) = hub.search("ResearchSubject", []).resources
    study = {"id": subject["study"]["reference"].partition("/")[2]}
    group = hub.read("Group", group_id(study["id"]))
    assert group is not None and [m["inactive"] for m in group["member"]] == [False]

    (ack,) = await send(gateway, crm("C04", CSR_OFF, control="CRM0002").encode())
    assert msa(ack)[0] == "AA"
    group = (await settled(gateway)).read("Group", group_id(study["id"]))
    assert group is not None and [m["inactive"] for m in group["member"]] == [True]
    assert group["member"][0]["period"]["end"].startswith("2026-09-01")

    base = f"http://127.0.0.1:{gateway.http_port}/fhir"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        kick = await http.get(f"/Group/{group['id']}/$export",
                              params={"_type": "Patient,ResearchSubject"},
                              headers={"Prefer": "respond-async",
                                       "Accept": "application/fhir+json"})
        assert kick.status_code == 202, kick.text
        for _ in range(600):  # polling, as a Bulk Data client does
            status = await http.get(kick.headers["Content-Location"])
            if status.status_code != 202:
                break
            await asyncio.sleep(0.05)
        assert status.status_code == 200
        files = {o["type"]: o["url"] for o in status.json()["output"]}
        patients = (await http.get(files["Patient"])).text.splitlines()
        subjects = (await http.get(files["ResearchSubject"])).text.splitlines()
    (patient,) = [orjson.loads(line) for line in patients]
    (exported,) = [orjson.loads(line) for line in subjects]
    assert exported["individual"] == {"reference": f"Patient/{patient['id']}"}
    assert exported["status"] == "off-study"

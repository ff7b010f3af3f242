"""Every study of the studies file is a ResearchStudy from the moment the gateway starts
(real gateway, read through its FHIR API), complete, and not re-versioned by a restart or
by data that names it."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.mapping.research import AREA_SYSTEM
from tests.support import settled
from tests.test_runtime import msa, oru, send, start_gateway


async def studies_of(port: int) -> dict[str, dict]:  # type: ignore[type-arg]
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{port}/fhir/ResearchStudy")
    assert r.status_code == 200
    return {e["resource"]["title"].split(":")[0]: e["resource"] for e in r.json()["entry"]}


async def test_every_configured_study_exists_complete_when_the_gateway_starts(
        tmp_path: Path, database_url: str) -> None:
    gw = await start_gateway(tmp_path, database_url)
    try:
        studies = await studies_of(gw.http_port)
        assert len(studies) == 4
        carcik = studies["CARCIK-CD19"]
        assert [i["value"] for i in carcik["identifier"]] == ["2023-503816-41-00", "NCT05252403"]
        assert carcik["phase"]["coding"][0]["code"] == "phase-1-phase-2"
        assert carcik["condition"][0]["coding"][0] == {
            "system": AREA_SYSTEM, "code": "haematological-neoplasms",
            "display": "Haematological neoplasms"}
        assert carcik["condition"][1]["coding"][0]["code"] == "91857003"
        assert carcik["sponsor"]["display"].startswith("Fondazione Matilde Tettamanti")
        assert [s["identifier"]["value"] for s in carcik["site"]] == [
            "hpg23", "asstmonza", "polimi", "cf-lanzani", "cf-verri"]
        kidney = next(s for s in studies.values() if "cystinosis" in s["title"])
        assert kidney["condition"][0]["coding"][0]["code"] == "kidney-diseases"
        # a result naming the study (CTI) brings the same content (meta.source: the site)
        message = oru("STUDY01").decode().replace(
            "OBR|1|", "CTI|2023-503816-41-00^^https://euclinicaltrials.eu/clinicalTrialId\rOBR|1|")
        [ack] = await send(gw, message.encode())
        assert msa(ack)[0] == "AA"
        await settled(gw)  # role all: the FHIR API shows what the projector wrote
        after = (await studies_of(gw.http_port))["CARCIK-CD19"]
        assert {k: v for k, v in after.items() if k != "meta"} == {
            k: v for k, v in carcik.items() if k != "meta"}
        versions = {t: s["meta"]["versionId"] for t, s in (await studies_of(gw.http_port)).items()}
    finally:
        await gw.stop()
    again = await start_gateway(tmp_path, database_url)  # a restart writes no new version
    try:
        assert {t: s["meta"]["versionId"] for t, s in (await studies_of(again.http_port)).items()
                } == versions
    finally:
        await again.stop()

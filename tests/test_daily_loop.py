"""The integrator's daily loop against a running gateway (real MLLP and HTTP sockets, real
site files, both databases): a result with an unmapped local code, the code added to the
site's code map, ``POST /admin/reload``, ``POST /admin/replay`` → exactly one current
Observation per result; a message refused for a reason the configuration fixes is processed
again when resent."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.runtime import Gateway
from tests.test_runtime import msa, send, start_gateway

# A monitoring result from the Bergamo lab. What matters: MSH-4 HPG23, MSH-10, OBR-3 the
# filler order number, OBX-3 a local code (system L) that hpg23.yaml does not map (ZZNEW),
# next to a mapped one (PCR), both NM.
ORU = ("MSH|^~\\&|LAB|{facility}|GATEWAY|PLAGENCELL|20261127101500+0100||ORU^R01^ORU_R01|{cid}|P|"
       "2.5.1\r"
       "PID|1||MRN555^^^HPG23^MR||Rossi^Mario||19800101|M\r"
       "OBR|1||FILL555^LAB|PANEL^Panel^L|||20261127080000\r"
       "OBX|1|NM|ZZNEW^New marker^L||{value}|mg/L^mg/L^UCUM|||||F|||20261127080000\r"
       "OBX|2|NM|PCR^C reactive protein^L||7.5|mg/L^mg/L^UCUM|||||F|||20261127080000\r")
NEW_CODE = ('  "ZZNEW": {system: "http://loinc.org", code: "2276-4", '
            'display: "Ferritin [Mass/volume] in Serum or Plasma", unit: "ug/L"}\n')


def oru(cid: str, value: str = "41", facility: str = "HPG23") -> bytes:
    return ORU.format(cid=cid, value=value, facility=facility).encode()


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    target = tmp_path / "sites"
    shutil.copytree(EXAMPLE_SITES, target)
    return target


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str, sites: Path) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path, database_url, sites=sites)
    yield gw
    await gw.stop()


def add_code(sites: Path) -> None:
    path = sites / "hpg23.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("code_map:\n", "code_map:\n" + NEW_CODE, 1), encoding="utf-8")


def observations(gw: Gateway, code: str) -> list[dict[str, object]]:
    assert gw.store is not None
    return gw.store.search("Observation", [("code", code)]).resources


async def post(gw: Gateway, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"http://127.0.0.1:{gw.http_port}{path}")


async def test_fixing_the_code_map_then_reload_and_replay_leaves_one_observation_per_result(
        gateway: Gateway, sites: Path) -> None:
    [ack] = await send(gateway, oru("LOOP1"))
    assert msa(ack) == ["AA", "LOOP1"]
    local = observations(gateway, "urn:plagencell:site:hpg23:codes|ZZNEW")
    assert len(local) == 1 and len(observations(gateway, "http://loinc.org|2276-4")) == 0

    add_code(sites)
    r = await post(gateway, "/admin/reload")
    assert r.status_code == 200 and r.json()["status"] == "reloaded"
    r = await post(gateway, "/admin/replay?status=all&site=hpg23")
    assert r.status_code == 200 and r.json()["remapped"] == 1 and r.json()["errors"] == 0

    [mapped] = observations(gateway, "http://loinc.org|2276-4")
    assert mapped["id"] == local[0]["id"]  # the same result, a new version
    assert mapped["meta"]["versionId"] == "2"  # type: ignore[index]
    assert len(observations(gateway, "http://loinc.org|1988-5")) == 1  # PCR untouched
    assert gateway.store is not None
    subject = mapped["subject"]["reference"]  # type: ignore[index]
    assert len(gateway.store.search("Observation", [("subject", subject)]).resources) == 2


async def test_an_invalid_site_file_on_reload_keeps_the_old_ones_and_says_why(
        gateway: Gateway, sites: Path) -> None:
    (sites / "hpg23.yaml").write_text("id: hpg23\ncode_map: [not, a, map]\n", encoding="utf-8")
    r = await post(gateway, "/admin/reload")
    assert r.status_code == 422
    assert r.json()["status"] == "kept" and "hpg23.yaml" in r.json()["error"]
    [ack] = await send(gateway, oru("LOOP2"))
    assert msa(ack) == ["AA", "LOOP2"]  # the site still known, its old code map in force


async def test_a_message_refused_for_an_unknown_facility_is_processed_when_resent_after_the_fix(
        gateway: Gateway, sites: Path) -> None:
    [ack] = await send(gateway, oru("LOOP3", facility="NEWLAB"))
    assert msa(ack) == ["AR", "LOOP3"]
    path = sites / "hpg23.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "facilities: [HPG23]", "facilities: [HPG23, NEWLAB]"), encoding="utf-8")
    assert (await post(gateway, "/admin/reload")).status_code == 200

    [again] = await send(gateway, oru("LOOP3", facility="NEWLAB"))
    assert msa(again) == ["AA", "LOOP3"]
    assert gateway.store is not None
    record = gateway.store.inbox_find("LAB", "NEWLAB", "LOOP3")
    assert record is not None and record.status == "processed" and record.site == "hpg23"
    [third] = await send(gateway, oru("LOOP3", facility="NEWLAB"))
    assert third == again  # accepted: from now on answered from the inbox


async def test_an_accepted_message_resent_is_answered_from_the_inbox_without_a_second_effect(
        gateway: Gateway) -> None:
    [first] = await send(gateway, oru("LOOP4"))
    [second] = await send(gateway, oru("LOOP4", value="99"))
    assert second == first
    [obs] = observations(gateway, "urn:plagencell:site:hpg23:codes|ZZNEW")
    assert obs["valueQuantity"]["value"] == 41  # type: ignore[index]


async def test_the_log_names_the_refused_facility_and_no_patient_data(
        gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="gateway.ingest.service"):
        [ack] = await send(gateway, oru("LOOP5", facility="UNKNOWNLAB"))
    assert msa(ack) == ["AR", "LOOP5"]
    assert "from LAB^UNKNOWNLAB rejected (103) at MSH-4" in caplog.text
    for identity in ("LOOP5", "MRN555", "Rossi"):  # MSH-10 only as its keyed hash
        assert identity not in caplog.text


def test_a_pid_file_of_a_process_that_is_gone_is_ignored(tmp_path: Path) -> None:
    from gateway import pidfile

    path = pidfile.write(tmp_path, "0.0.0.0", 8123)  # noqa: S104 - what serve may bind
    running = pidfile.read(tmp_path)
    assert running is not None and running.url == "http://127.0.0.1:8123"
    path.write_text("999999999\nhttp://127.0.0.1:8123\n")  # no such process
    assert pidfile.read(tmp_path) is None
    pidfile.remove(path)  # not ours: left alone
    assert path.exists()


async def test_a_study_added_to_the_studies_file_is_a_research_study_after_reload(
        gateway: Gateway, sites: Path) -> None:
    """studies.yaml is read at start and at every reload: a new study (and a changed title)
    is in the FHIR API after ``POST /admin/reload``, without a restart."""
    path = sites / "studies.yaml"
    text = path.read_text(encoding="utf-8")
    new_study = ('  - id: dc-vaccine-gbm\n'
                 '    title: "Dendritic-cell vaccine in glioblastoma"\n'
                 '    area: neurological-disorders\n'
                 '    identifiers:\n'
                 '      - {system: "https://clinicaltrials.gov/nctid", value: "NCT09999999"}\n'
                 '    status: active\n'
                 '    sites: [hsr]\n')
    text = text.replace("studies:\n", "studies:\n" + new_study, 1).replace(
        "Academic anti-CD19 CAR-T", "Academic anti-CD19 CAR-T (amended)", 1)
    path.write_text(text, encoding="utf-8")
    r = await post(gateway, "/admin/reload")
    assert r.status_code == 200, r.text
    async with httpx.AsyncClient() as http:
        found = await http.get(f"http://127.0.0.1:{gateway.http_port}/fhir/ResearchStudy")
    titles = {e["resource"]["title"]: e["resource"]["meta"]["versionId"]
              for e in found.json()["entry"]}
    assert titles["Dendritic-cell vaccine in glioblastoma"] == "1"
    assert titles[
        "Academic anti-CD19 CAR-T (amended) in relapsed/refractory large B-cell lymphoma"] == "2"

"""Over real HTTP (uvicorn): POST /lab-exports, the terminology router, unmapped codes."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from gateway.adapters.governance import admin_codes_router
from gateway.adapters.labexport import import_export
from gateway.adapters.labexport.http import labexport_router
from gateway.adapters.loader import Network
from gateway.adapters.terminology import terminology_router
from gateway.fhir import validate
from gateway.store.sql import SqlStore
from tests.adapters.conftest import KEY, csv_of, serving
from tests.adapters.test_labexport import GOOD, LANZANI_HEADER, ROWS, xlsx_of


def app_for(store: SqlStore, network: Network) -> FastAPI:
    app = FastAPI()
    app.include_router(labexport_router(store, network, KEY))
    app.include_router(terminology_router(network))
    app.include_router(admin_codes_router(store, network))
    return app


def test_a_csv_body_is_imported_and_answered_with_the_report(
        store: SqlStore, network: Network) -> None:
    with serving(app_for(store, network)) as base:
        ok = httpx.post(f"{base}/lab-exports", params={"site": "cf-lanzani"},
                        content=csv_of(GOOD), headers={"content-type": "text/csv"})
        assert ok.status_code == 200 and ok.json()["accepted"] == 1
        bad = httpx.post(f"{base}/lab-exports", params={"site": "cf-lanzani"},
                         content=csv_of(*ROWS), headers={"content-type": "text/csv",
                                                         "accept": "application/fhir+json"})
        assert bad.status_code == 422
        outcome = bad.json()
        validate(outcome)
        assert outcome["issue"][0]["location"] == ["row[4].collected_at"]
        unknown = httpx.post(f"{base}/lab-exports", params={"site": "nowhere"}, content=b"x")
        assert unknown.status_code == 404


def test_an_xlsx_upload_is_imported(store: SqlStore, network: Network) -> None:
    data = xlsx_of([LANZANI_HEADER, ["BG-7", "FT01", "LOT-9", "CARCIK", "", "2026-11-03",
                                     "CAR", "CAR+", 41.5, "%", "", "", ""]])
    with serving(app_for(store, network)) as base:
        response = httpx.post(f"{base}/lab-exports", params={"site": "cf-lanzani"},
                              files={"file": ("rilascio.xlsx", data)})
    assert response.status_code == 200, response.text
    assert response.json()["layout"] == "lims-xlsx" and response.json()["file"] == "rilascio.xlsx"


def test_translate_finds_the_network_code_of_a_local_code(
        store: SqlStore, network: Network) -> None:
    with serving(app_for(store, network)) as base:
        maps = httpx.get(f"{base}/fhir/ConceptMap").json()
        assert maps["total"] == 9
        for entry in maps["entry"]:
            validate(entry["resource"])
        got = httpx.get(f"{base}/fhir/ConceptMap/$translate", params={
            "system": "urn:plagencell:site:hpg23:codes", "code": "PCR"}).json()
        assert got["parameter"][0] == {"name": "result", "valueBoolean": True}
        concept = got["parameter"][2]["part"][1]["valueCoding"]
        assert (concept["system"], concept["code"]) == ("http://loinc.org", "1988-5")
        posted = httpx.post(f"{base}/fhir/ConceptMap/cf-verri-lab/$translate", json={
            "resourceType": "Parameters", "parameter": [{"name": "coding", "valueCoding": {
                "system": "urn:plagencell:site:cf-verri:codes", "code": "QC-LAL"}}]}).json()
        assert posted["parameter"][2]["part"][1]["valueCoding"]["code"] == "product-endotoxin"
        none = httpx.get(f"{base}/fhir/ConceptMap/$translate", params={"code": "NOPE"}).json()
        assert none["parameter"][0]["valueBoolean"] is False
        cs = httpx.get(f"{base}/fhir/CodeSystem/cgt-lab")
        assert cs.status_code == 200 and cs.headers["content-type"].startswith(
            "application/fhir+json")
        validate(cs.json())
        assert httpx.get(f"{base}/fhir/ConceptMap/nope").status_code == 404


def test_unmapped_codes_are_counted_per_site_from_the_inbox(
        store: SqlStore, network: Network) -> None:
    from gateway.hl7.parser import parse
    from gateway.mapping import map_message
    from gateway.mapping.context import report_outcome
    from gateway.store.base import InboxRecord

    site = network.sites["hpg23"]
    for n in range(2):
        raw = (f"MSH|^~\\&|LIS|HPG23|GW|PLAGENCELL|20261120||ORU^R01|C{n}|P|2.5.1\r"
               "PID|1||77^^^HPG23^MR\rOBR|1|O1|F1|MON^Mon^L\r"
               "OBX|1|NM|PCR^CRP^L||5|mg/L|||||F\rOBX|2|NM|ZZNEW^New test^L||1|%|||||F\r")
        result = map_message(parse(raw), site, pseudonym_key=KEY, received="2026-11-20T00:00:00Z")
        with store.transaction() as tx:
            tx.inbox_add(InboxRecord("LIS", "HPG23", f"C{n}", raw.encode(),
                                     f"2026-11-2{n}T00:00:00Z", site="hpg23",
                                     status="processed", report=report_outcome(result.report)))
    import_export(store, network, "hpg23", csv_of("7,,,,,2026-11-20,ZZLAB,,,1,%,,,,,",
                                                  "8,,,,,2026-11-20,ZZNEW,,,1,%,,,,,"),
                  "x.csv", KEY)
    with serving(app_for(store, network)) as base:
        counts = httpx.get(f"{base}/admin/unmapped-codes").json()["sites"]
    assert {"code": "ZZLAB", "coding_system": "local", "channels": ["lab-export"],
            "count": 1} in [{k: v for k, v in e.items() if k not in ("first_seen", "last_seen")}
                            for e in counts["hpg23"]]
    # one entry per site and code, whatever the channel
    [new] = [e for e in counts["hpg23"] if e["code"] == "ZZNEW"]
    assert {k: v for k, v in new.items() if k not in ("first_seen", "last_seen")} == {
        "code": "ZZNEW", "coding_system": "L", "channels": ["hl7", "lab-export"], "count": 3}
    assert new["last_seen"] > "2026-11-21T00:00:00.000Z"  # the export, imported now
    assert all(entry["code"] != "PCR" for entry in counts["hpg23"])

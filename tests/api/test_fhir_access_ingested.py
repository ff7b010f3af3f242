"""Per-study and per-site access over what the ingest really writes (not hand-made
resources): the study tag of CTI, the implicit ResearchSubject, the site's Organization as
Provenance agent. Real HL7 messages through ``IngestService``, then a real server, on both
databases.

Calori (cell factory) releases a CAR-T product for the EU CT study 2024-510233-27-00 and
San Raffaele (hospital) monitors the same patient for it (both with CTI); Bergamo (HPG23)
sends a CRP of another patient, in no study.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.adapters.loader import load_network
from gateway.ingest import IngestService, Job, Outcome
from gateway.store.sql import SqlStore
from tests.mapping.test_research import CART_LBCL, MONITORING, RELEASE
from tests.test_ingest import oru

from .access_support import Served, access_server, all_pages, as_client, keys
from .conftest import open_store

TYPES = ("Patient", "Observation", "Specimen", "ResearchStudy", "ResearchSubject",
         "Provenance", "Organization")


@pytest.fixture
def served(database_url: str) -> Iterator[Served]:
    store = open_store(database_url)
    service = IngestService(store, load_network(), b"k" * 32)
    out: list[Outcome] = []
    service._run_group([Job(m, "mllp", out.append) for m in (
        RELEASE.encode(), MONITORING.encode(), oru("NOSTUDY1"))])
    assert [o.status for o in out] == ["processed"] * 3
    with access_server(store) as served:
        yield served
    store.close()


def everything(http: httpx.Client) -> dict[str, set[str]]:
    return {t: {k for page in all_pages(http, f"/{t}", {"_count": "200"}) for k in keys(page)}
            for t in TYPES}


def sent_by(store: SqlStore, site: str) -> set[str]:
    """What the Provenance of one site's messages names (unrestricted)."""
    org = store.search("Organization", [("identifier", f"urn:plagencell:site|{site}")])
    [organization] = org.resources
    provenance = store.search("Provenance", [("agent", f"Organization/{organization['id']}")])
    return {t["reference"] for p in provenance.resources for t in p["target"]} | {
        f"Provenance/{p['id']}" for p in provenance.resources}


def test_a_study_client_sees_the_studys_ingested_data_and_not_the_rest(served: Served) -> None:
    with as_client(served) as everyone:
        all_of = everything(everyone)
    bergamo = sent_by(served.store, "hpg23") - {k for k in all_of["Organization"]}
    [patient] = [k for k in bergamo if k.startswith("Patient/")]
    with as_client(served, studies=CART_LBCL) as http:
        seen = everything(http)
        assert http.get(f"/{patient}").status_code == 404
    assert len(seen["ResearchStudy"]) == 1
    assert seen["ResearchSubject"] == all_of["ResearchSubject"]
    for rtype in ("Patient", "Specimen", "Observation", "Provenance"):
        assert seen[rtype] == all_of[rtype] - bergamo, rtype
    assert len(seen["Observation"]) == 4 and len(seen["Provenance"]) == 2
    assert seen["Organization"] == all_of["Organization"]


def test_another_study_client_sees_none_of_it(served: Served) -> None:
    with as_client(served, studies="2099-000000-00-00") as http:
        seen = everything(http)
    assert {t: v for t, v in seen.items() if v and t != "Organization"} == {}


def test_a_site_client_sees_what_its_site_sent(served: Served) -> None:
    with as_client(served, sites="cf-calori") as http:
        seen = set().union(*everything(http).values())
    expected = sent_by(served.store, "cf-calori")
    assert {k for k in seen if not k.startswith("Organization/")} == \
        {k for k in expected if not k.startswith("Organization/")}
    assert not any(k in seen for k in sent_by(served.store, "hsr")
                   if k.startswith(("Observation/", "Provenance/")))

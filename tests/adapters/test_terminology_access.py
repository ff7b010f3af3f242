"""ConceptMap and $translate are reference data (the sites' code tables, no patient data):
a client restricted to studies or sites uses them like any other (docs/security.md,
"Per-study access")."""

from __future__ import annotations

import httpx

from gateway.adapters.loader import Network
from gateway.store.sql import SqlStore
from tests.adapters.conftest import serving
from tests.adapters.test_http import app_for
from tests.api.access_support import PrincipalFromHeaders


def test_a_restricted_client_translates_codes_and_lists_concept_maps(
        store: SqlStore, network: Network) -> None:
    app = app_for(store, network)
    app.add_middleware(PrincipalFromHeaders)
    restricted = {"X-Test-Studies": "some-study", "X-Test-Sites": "hpg23"}
    with serving(app) as base:
        maps = httpx.get(f"{base}/fhir/ConceptMap", headers=restricted)
        assert maps.status_code == 200 and maps.json()["total"] == 9
        got = httpx.get(f"{base}/fhir/ConceptMap/$translate", headers=restricted, params={
            "system": "urn:plagencell:site:hpg23:codes", "code": "PCR"})
        assert got.status_code == 200
        assert got.json()["parameter"][0] == {"name": "result", "valueBoolean": True}

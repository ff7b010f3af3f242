"""The CapabilityStatement tells the truth: types, interactions, parameters with types."""

from __future__ import annotations

import httpx

from gateway.api.fhir.validation import validate_resource
from gateway.store.search import params as registry

from .conftest import serving


def test_metadata_is_a_valid_r4_capability_statement(client: httpx.Client):
    statement = client.get("/metadata").json()
    # the published R4 schema predates the 4.0.1 technical correction: its fhirVersion
    # enum stops at 4.0.0, so that one element is checked by value instead
    validate_resource({**statement, "fhirVersion": "4.0.0"})
    assert statement["fhirVersion"] == "4.0.1"
    assert "application/fhir+json" in statement["format"]


def test_every_served_type_lists_every_registry_parameter_with_its_type(client: httpx.Client):
    rest = client.get("/metadata").json()["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    for rtype in registry.RESOURCE_TYPES:
        published = {p["name"]: p["type"] for p in by_type[rtype]["searchParam"]}
        expected = {d.name: d.type for d in registry.search_parameters(rtype)}
        assert published == expected, rtype
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch",
                                                         "history-system"}


def test_includes_and_the_network_parameter_are_published(client: httpx.Client):
    rest = client.get("/metadata").json()["rest"][0]
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    assert "Observation:subject" in observation["searchInclude"]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert "Observation:subject" in patient["searchRevInclude"]
    study = next(p for p in observation["searchParam"] if p["name"] == "research-study")
    assert study["type"] == "reference"
    assert study["definition"] == f"{registry.NETWORK_BASE}/research-study"
    assert {i["code"] for i in observation["interaction"]} >= {
        "read", "vread", "update", "delete", "create", "search-type", "history-instance",
        "history-type"}


def test_the_research_study_search_parameter_resource_is_valid_r4(client: httpx.Client):
    definition = client.get("/SearchParameter/research-study").json()
    validate_resource(definition)
    assert definition["url"] == f"{registry.NETWORK_BASE}/research-study"
    assert "workflow-researchStudy" in definition["expression"]


def test_types_served_by_other_routers_can_be_added_to_the_statement(store):
    codesystem = {"type": "CodeSystem", "interaction": [{"code": "read"}]}
    with serving(store, capability_resources=[codesystem]) as served, served.client() as http:
        types = [r["type"] for r in http.get("/metadata").json()["rest"][0]["resource"]]
    assert types[-1] == "CodeSystem"

"""The research endpoints of the running gateway (Bulk ``$export`` and its status and file
URLs, ``$everything``, ``$lastn``, ``$viewdefinition-run``, stored ViewDefinitions,
Subscriptions, cohort Groups) behind real tokens: 401 without a token or with a bad one,
403 to a token without their scope, admitted with it; and the whole gateway's
CapabilityStatement and ``/openapi.json`` as a client sees them. On both databases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft6Validator

from gateway.runtime import Gateway
from gateway.security.principal import EXPORT
from tests.conftest import FHIR_SCHEMA
from tests.security.support import ApiClient, bearer, get_token, start, write_clients

EVERYTHING = ApiClient("all", ["system/*.cruds", EXPORT])
UNRELATED = ApiClient("unrelated", ["system/Organization.r"])

VIEW = {"resourceType": "ViewDefinition", "resource": "Observation", "status": "active",
        "select": [{"column": [{"name": "id", "path": "getResourceKey()"}]}]}
RUN = {"resourceType": "Parameters", "parameter": [{"name": "viewResource", "resource": VIEW}]}
SUBSCRIPTION = {"resourceType": "Subscription", "status": "off", "reason": "test",
                "criteria": "Observation?code=http://loinc.org|26464-8",
                "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}}
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
# (method, path, body, extra headers, the scopes that admit it)
ENDPOINTS: list[tuple[str, str, Any, dict[str, str], str]] = [
    ("GET", "/fhir/$export", None, ASYNC, f"{EXPORT} system/*.rs"),
    ("POST", "/fhir/$export", {"resourceType": "Parameters"}, ASYNC, f"{EXPORT} system/*.rs"),
    ("GET", "/fhir/Patient/$export", None, ASYNC, f"{EXPORT} system/*.rs"),
    ("GET", "/fhir/Group/g1/$export", None, ASYNC, f"{EXPORT} system/*.rs"),
    ("GET", "/fhir/$export-poll/j1", None, {}, EXPORT),
    ("DELETE", "/fhir/$export-poll/j1", None, {}, EXPORT),
    ("GET", "/fhir/$export-file/j1/Patient.ndjson", None, {}, EXPORT),
    ("GET", "/fhir/Patient/p1/$everything", None, {}, "system/Patient.r"),
    ("GET", "/fhir/Observation/$lastn?patient=Patient/p1", None, {}, "system/Observation.r"),
    ("POST", "/fhir/$viewdefinition-run", RUN, {}, "system/Observation.r"),
    ("GET", "/fhir/$viewdefinition-run?viewReference=ViewDefinition/v1", None, {},
     "system/ViewDefinition.r system/Observation.r"),
    ("GET", "/fhir/ViewDefinition/v1/$viewdefinition-run", None, {},
     "system/ViewDefinition.r system/Observation.r"),
    ("GET", "/fhir/ViewDefinition", None, {}, "system/ViewDefinition.s"),
    ("POST", "/fhir/ViewDefinition", VIEW, {}, "system/ViewDefinition.c"),
    ("GET", "/fhir/ViewDefinition/v1", None, {}, "system/ViewDefinition.r"),
    ("DELETE", "/fhir/ViewDefinition/v1", None, {}, "system/ViewDefinition.d"),
    ("GET", "/fhir/Subscription", None, {}, "system/Subscription.s"),
    ("POST", "/fhir/Subscription", SUBSCRIPTION, {}, "system/Subscription.c system/Observation.s"),
    ("GET", "/fhir/Subscription/s1", None, {}, "system/Subscription.r"),
    ("DELETE", "/fhir/Subscription/s1", None, {}, "system/Subscription.d"),
    ("GET", "/fhir/Group?research-study=ResearchStudy/s1", None, {}, "system/Group.s"),
]


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start(tmp_path, write_clients(tmp_path / "clients.yaml", EVERYTHING, UNRELATED),
                     database_url)
    yield gw
    await gw.stop()


async def _call(http: httpx.AsyncClient, method: str, path: str, body: Any,
                headers: dict[str, str]) -> httpx.Response:
    kwargs = {"json": body} if body is not None else {}
    return await http.request(method, path, headers=headers, **kwargs)


async def test_every_research_endpoint_answers_401_without_a_token_and_with_a_bad_one(
        gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        for method, path, body, extra, _ in ENDPOINTS:
            for auth in ({}, bearer("bad.token.here")):
                r = await _call(http, method, path, body, {**extra, **auth})
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert r.json()["resourceType"] == "OperationOutcome"


async def test_every_research_endpoint_refuses_a_token_without_its_scope_and_admits_it(
        gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    unrelated = await get_token(base, UNRELATED)
    async with httpx.AsyncClient(base_url=base) as http:
        for method, path, body, extra, scopes in ENDPOINTS:
            r = await _call(http, method, path, body, {**extra, **bearer(unrelated)})
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert r.json()["issue"][0]["code"] == "forbidden"
            exact = await get_token(base, EVERYTHING, scopes)
            r = await _call(http, method, path, body, {**extra, **bearer(exact)})
            assert r.status_code not in (401, 403, 500), (method, path, scopes, r.text)


async def test_a_client_that_reads_only_some_types_polls_and_downloads_its_own_export(
        gateway: Gateway) -> None:
    """The status and file URLs need the export scope, not read on every type (they
    answered 403 to such a client, which could start an export and never collect it)."""
    base = f"http://127.0.0.1:{gateway.http_port}"
    token = await get_token(base, EVERYTHING, f"{EXPORT} system/Patient.rs")
    async with httpx.AsyncClient(base_url=base, headers=bearer(token)) as http:
        kick = await http.get("/fhir/Patient/$export", params={"_type": "Patient"},
                              headers=ASYNC)
        assert kick.status_code == 202, kick.text
        status = await http.get(kick.headers["content-location"])
        for _ in range(100):
            if status.status_code != 202:
                break
            await asyncio.sleep(0.1)
            status = await http.get(kick.headers["content-location"])
        assert status.status_code == 200, status.text
        for item in status.json()["output"]:
            assert (await http.get(item["url"])).status_code == 200
        assert (await http.delete(kick.headers["content-location"])).status_code == 202


async def test_the_location_of_a_created_view_or_subscription_answers(
        gateway: Gateway) -> None:
    """A create's ``Location`` names ``…/{id}/_history/{vid}``: it answered 404 ("not
    served here") for ViewDefinition and Subscription, which clients follow."""
    base = f"http://127.0.0.1:{gateway.http_port}"
    token = await get_token(base, EVERYTHING)
    async with httpx.AsyncClient(base_url=base, headers=bearer(token)) as http:
        for rtype, body in (("ViewDefinition", VIEW), ("Subscription", SUBSCRIPTION)):
            created = await http.post(f"/fhir/{rtype}", json=body)
            assert created.status_code == 201, created.text
            location = created.headers["location"]
            assert location.endswith("/_history/1"), location
            again = await http.get(location)
            assert again.status_code == 200, (rtype, again.text)
            assert again.json()["id"] == created.json()["id"]
            missing = await http.get(location.removesuffix("/1") + "/7")
            assert missing.status_code == 404, (rtype, missing.text)
    other = await get_token(base, UNRELATED)
    async with httpx.AsyncClient(base_url=base, headers=bearer(other)) as http:
        assert (await http.get(location)).status_code == 403  # no Subscription.r


async def test_the_capability_statement_is_valid_r4_and_lists_what_is_served(
        gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        statement = (await http.get("/fhir/metadata")).json()
    # the published R4 schema predates 4.0.1: its fhirVersion enum stops at 4.0.0
    assert statement["fhirVersion"] == "4.0.1"
    schema = json.loads(FHIR_SCHEMA.read_text(encoding="utf-8"))
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}"
              for e in Draft6Validator(schema).iter_errors({**statement,
                                                            "fhirVersion": "4.0.0"})]
    assert errors == []
    assert _empty_arrays(statement) == []  # FHIR JSON has no empty arrays
    rest = statement["rest"][0]
    assert {o["name"] for o in rest["operation"]} >= {"export", "viewdefinition-run"}
    by_type = {r["type"]: r for r in rest["resource"]}
    assert {"Group", "Subscription", "ViewDefinition", "AuditEvent"} <= set(by_type)
    operations = {t: {o["name"] for o in r.get("operation", [])} for t, r in by_type.items()}
    assert {"export", "everything"} <= operations["Patient"]
    assert "export" in operations["Group"] and "lastn" in operations["Observation"]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


async def test_openapi_renders_with_one_operation_id_per_route(gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    token = await get_token(base, UNRELATED)
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.get("/openapi.json", headers=bearer(token))
    assert r.status_code == 200, r.text
    paths = r.json()["paths"]
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for served in ("/fhir/$export", "/fhir/$viewdefinition-run", "/fhir/Subscription",
                   "/fhir/ViewDefinition", "/fhir/Patient/{id}/$everything"):
        assert served in paths, served


def _empty_arrays(node: Any, at: str = "") -> list[str]:
    if isinstance(node, list):
        found = [at] if not node else []
        return found + [p for i, x in enumerate(node) for p in _empty_arrays(x, f"{at}[{i}]")]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _empty_arrays(v, f"{at}.{k}")]
    return []

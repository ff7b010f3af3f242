"""Views on the whole gateway with a clients file (real keys, tokens, audit trail), on
SQLite and PostgreSQL: 401 without a token, 403 without the scope the view needs, the run
of a client that has it, and its AuditEvent (operation, the stored view, no identity)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.runtime import Gateway
from gateway.store.audit import AuditLog, AuditQuery
from tests.security.support import ApiClient, bearer, get_token, start, write_clients

ANALYST = ApiClient("analyst", ["system/Observation.rs", "system/ViewDefinition.cruds"])
UNRELATED = ApiClient("unrelated", ["system/Organization.r"])
VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition", "resource": "Observation", "status": "active",
    "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                           {"name": "patient", "path": "subject.getReferenceKey(Patient)"}]}]}
OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}}


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start(tmp_path, write_clients(tmp_path / "clients.yaml", ANALYST, UNRELATED),
                     database_url)
    assert gw.store is not None
    with gw.store.transaction() as tx:
        tx.put_many([{"resourceType": "Patient", "id": "p1"}, OBSERVATION])
    yield gw
    await gw.stop()


def parameters(**params: Any) -> dict[str, Any]:
    entries = [{"name": "viewResource", "resource": VIEW}] if "view" in params else []
    if "reference" in params:
        entries.append({"name": "viewReference",
                        "valueReference": {"reference": params["reference"]}})
    entries.append({"name": "_format", "valueCode": "json"})
    return {"resourceType": "Parameters", "parameter": entries}


async def test_views_need_a_token_and_the_scope_of_what_they_read(gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    unrelated = await get_token(base, UNRELATED)
    async with httpx.AsyncClient(base_url=f"{base}/fhir", timeout=30) as http:
        calls = [("POST", "/$viewdefinition-run", parameters(view=True)),
                 ("GET", "/ViewDefinition/v1/$viewdefinition-run", None),
                 ("POST", "/ViewDefinition", VIEW), ("GET", "/ViewDefinition", None)]
        for method, path, body in calls:
            anonymous = await http.request(method, path, json=body)
            assert anonymous.status_code == 401, (method, path)
            refused = await http.request(method, path, json=body, headers=bearer(unrelated))
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["resourceType"] == "OperationOutcome"


async def test_a_client_with_the_scope_stores_and_runs_a_view_and_the_run_is_audited(
        gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    token = bearer(await get_token(base, ANALYST))
    async with httpx.AsyncClient(base_url=f"{base}/fhir", timeout=30, headers=token) as http:
        inline = await http.post("/$viewdefinition-run", json=parameters(view=True))
        id = (await http.post("/ViewDefinition", json=VIEW)).json()["id"]
        stored = await http.get(f"/ViewDefinition/{id}/$viewdefinition-run",
                                params={"_format": "csv", "patient": "Patient/p1"})
    assert inline.status_code == 200 and inline.json() == [{"id": "o1", "patient": "p1"}]
    assert stored.text == "id,patient\r\no1,p1\r\n"
    assert gateway.audit is not None and gateway.store is not None and gateway.audit.flush()
    rows, _ = AuditLog(gateway.store).search(AuditQuery(newest_first=False, count=1000))
    events = [orjson.loads(content) for _, content in rows]
    runs = [e for e in events if e["subtype"][-1]["code"] == "viewdefinition-run"]
    assert len(runs) == 2 and all(e["outcome"] == "0" for e in runs)
    assert runs[0]["agent"][0]["who"]["identifier"]["value"] == "analyst"
    what = [x.get("what") for x in runs[1]["entity"]]
    assert {"reference": f"ViewDefinition/{id}"} in what
    query = next(base64.b64decode(x["query"]).decode() for x in runs[1]["entity"]
                 if "query" in x)
    assert "_format=csv" in query and "patient=Patient/p1" in query

"""A real server with the Bulk Data router for the export tests, and a test-only principal.

``PrincipalFromHeader`` stands in for the authentication middleware: it puts the Principal
named by the ``X-Test-Client`` header on ``request.state.principal`` (none: ANONYMOUS).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.fhir import fhir_router, install_fhir_errors
from gateway.api.fhir.export import export_router
from gateway.api.fhir.operations import capability_operations, operations_router
from gateway.export.manager import ExportManager
from gateway.security.principal import EXPORT, Principal
from gateway.store.exports import recorded_restriction
from gateway.store.sql import SqlStore
from tests.api.conftest import ThreadedServer

KEY = b"export-test-network-key-0123456789ab"
CLIENTS = {
    "exporter": Principal("exporter", frozenset({EXPORT, "system/*.rs"})),
    "other": Principal("other", frozenset({EXPORT, "system/*.rs"})),
    "reader": Principal("reader", frozenset({"system/*.rs"})),
    "patients-only": Principal("patients-only", frozenset({EXPORT, "system/Patient.rs"})),
    "restricted": Principal("restricted", frozenset({EXPORT, "system/*.rs"}),
                            studies=frozenset({"s1"})),
    "study-recipient": Principal("study-recipient", frozenset({EXPORT, "system/*.rs"}),
                                 extra={"pseudonymize": "study"}),
}


class PrincipalFromHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = dict(scope["headers"]).get(b"x-test-client", b"").decode()
            if name:
                scope.setdefault("state", {})["principal"] = CLIENTS[name]
        await self.app(scope, receive, send)


@dataclass
class ExportServer:
    store: SqlStore
    manager: ExportManager
    base: str

    def client(self, who: str = "exporter") -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30, headers={
            "Accept": "application/fhir+json", "Prefer": "respond-async",
            "X-Test-Client": who})


@contextmanager
def export_server(store: SqlStore, data_dir: Path, **options: Any) -> Iterator[ExportServer]:
    options.setdefault("restriction", recorded_restriction)  # as gateway.runtime wires it
    manager = ExportManager(store, data_dir, network_key=KEY, **options)
    manager.start()
    app = FastAPI()
    app.include_router(export_router(manager))
    app.include_router(operations_router(store))
    app.include_router(fhir_router(store, capability_operations=capability_operations()))
    install_fhir_errors(app)
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    app.add_middleware(PrincipalFromHeader)
    try:
        with ThreadedServer(app) as port:
            yield ExportServer(store, manager, f"http://127.0.0.1:{port}/fhir")
    finally:
        manager.stop()


def poll(http: httpx.Client, status_url: str, timeout: float = 30) -> httpx.Response:
    """Poll as a Bulk Data client does: while 202, wait Retry-After (capped for tests)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = http.get(status_url)
        if answer.status_code != 202:
            return answer
        assert answer.headers["X-Progress"]
        assert int(answer.headers["Retry-After"]) > 0
        if time.monotonic() > deadline:
            raise AssertionError("the export did not finish in time")
        time.sleep(0.05)


def patient(id: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "gender": "female",
            "identifier": [{"system": "urn:plagencell:pseudonym:v1", "value": f"pn-{id}"}]}


def observation(id: str, patient_id: str, code: str = "26464-8",
                effective: str = "2026-11-01T10:00:00Z") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": effective,
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": 4.5, "unit": "10*9/L"}}


def study(id: str) -> dict[str, Any]:
    return {"resourceType": "ResearchStudy", "id": id, "status": "active", "title": id}


def subject(study_id: str, patient_id: str, status: str = "on-study") -> dict[str, Any]:
    return {"resourceType": "ResearchSubject", "id": f"{study_id}-{patient_id}",
            "status": status, "study": {"reference": f"ResearchStudy/{study_id}"},
            "individual": {"reference": f"Patient/{patient_id}"}}


def ndjson(text: str) -> list[dict[str, Any]]:
    import orjson

    return [orjson.loads(line) for line in text.splitlines() if line]

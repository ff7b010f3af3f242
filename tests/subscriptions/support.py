"""A running gateway (role all) with fast retries for the subscription tests, and ORU
messages that make chosen Observations and versions of them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fhirpy import AsyncFHIRClient

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.runtime import Gateway
from gateway.security.settings import AuthSettings
from tests.test_runtime import msa, oru, send

LOINC_CRP = "http://loinc.org|1988-5"  # OBX-3 of tests.test_runtime.ORU


async def start(tmp_path: Path, database_url: str, *, clients: Path | None = None,
                **options: Any) -> Gateway:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=database_url, sites=EXAMPLE_SITES,
                        bus=BusSettings(node_id="test-node"), auth=AuthSettings(clients=clients),
                        **{"subscription_max_backoff": 0.2, **options})
    gateway = Gateway(settings)
    try:
        await gateway.start()
    except BaseException:
        await gateway.stop()
        raise
    return gateway


def fhir_client(gateway: Gateway, token: str | None = None) -> AsyncFHIRClient:
    return AsyncFHIRClient(f"http://127.0.0.1:{gateway.http_port}/fhir",
                           authorization=f"Bearer {token}" if token else None)


def result(order: int, cid: str, value: str) -> bytes:
    """An ORU whose Observation is the ``order``-th one (its own OBR filler number), at
    ``value`` (a new value: a new version of it)."""
    return oru(cid, value).replace(b"FILL1", f"FILL{order}".encode())


async def ingest(gateway: Gateway, *messages: bytes) -> None:
    for ack in await send(gateway, *messages):
        assert msa(ack)[0] == "AA", ack


def subscription(endpoint: str, *, criteria: str = f"Observation?code={LOINC_CRP}",
                 payload: str | None = "application/fhir+json", heartbeat: int | None = None,
                 headers: list[str] | None = None, status: str = "requested"
                 ) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint,
                               "header": headers or []}
    if payload:
        channel["payload"] = payload
    if heartbeat:
        channel["extension"] = [{
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                   "backport-heartbeat-period", "valueUnsignedInt": heartbeat}]
    return {"resourceType": "Subscription", "status": status, "reason": "release results",
            "criteria": criteria, "channel": channel}


async def wait_status(client: AsyncFHIRClient, id: str, status: str,
                      seconds: float = 20.0) -> dict[str, Any]:
    for _ in range(int(seconds / 0.05)):
        found = await client.reference("Subscription", id).to_resource()
        if found["status"] == status:
            return dict(found)
        await asyncio.sleep(0.05)
    raise AssertionError(f"Subscription/{id} is {found['status']}, not {status}")

"""Small builders shared by the bus tests: FHIR resources written through the store, and a
consumer loop that collects what reached the broker."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence

from gateway.bus.base import Bus, Delivery, inbound_headers
from gateway.store.base import Resource, Store

STUDY = "https://euclinicaltrials.eu/clinicalTrialId"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def patient(i: int, gender: str = "female") -> Resource:
    return {"resourceType": "Patient", "id": f"p{i}", "gender": gender,
            "identifier": [{"system": "urn:gateway:pseudonym", "value": f"PSN{i:05d}"}]}


def observation(i: int, value: float) -> Resource:
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "26464-8"}]},
            "subject": {"reference": f"Patient/p{i}"},
            "valueQuantity": {"value": value, "unit": "10*9/L",
                              "system": "http://unitsofmeasure.org", "code": "10*9/L"}}


def write(store: Store, resources: Sequence[Resource], *, site: str = "ospedale-a",
          message_id: str = "MSG1") -> list[str]:
    """One transaction, as the ingest does; returns "Type/id/_history/n" of the changes."""
    out = []
    with store.transaction() as tx:
        headers = inbound_headers(site=site, message_id=message_id)
        for resource in resources:
            change = tx.put(resource, source=f"urn:gateway:{site}", headers=headers)
            if change.changed:
                out.append(f"{change.resource_type}/{change.id}/_history/{change.version_id}")
    return out


async def collect(bus: Bus, group: str, topics: Sequence[str], count: int,
                  deadline: float = 20.0) -> list[Delivery]:
    """Read ``count`` records (or what arrived before the deadline) as group ``group``."""
    consumer = bus.subscribe(group, topics)
    await consumer.start()
    got: list[Delivery] = []
    end = time.monotonic() + deadline
    try:
        while len(got) < count and time.monotonic() < end:
            got.extend(await consumer.getmany(max_wait=0.5))
    finally:
        await consumer.stop()
    return got


async def wait_until(predicate: object, deadline: float = 20.0, step: float = 0.05) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(step)
    return False

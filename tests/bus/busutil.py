"""Small builders shared by the bus tests: FHIR resources written through the store, and a
consumer loop that collects what reached the broker."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence

from gateway.bus.base import Bus, Delivery, inbound_headers
from gateway.store.base import Resource, Store
from tests.support import process

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
                  deadline: float = 20.0, keys: set[str] | None = None) -> list[Delivery]:
    """Read ``count`` records, or until every key of ``keys`` was seen, or the deadline."""
    consumer = bus.subscribe(group, topics)
    await consumer.start()
    got: list[Delivery] = []
    end = time.monotonic() + deadline

    def done() -> bool:
        return keys <= {d.key for d in got} if keys is not None else len(got) >= count

    try:
        while not done() and time.monotonic() < end:
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


def versions(store: object) -> set[tuple[str, str, int, bool, bytes | None]]:
    """Every stored version: (type, id, versionId, deleted, content) (content is JSON)."""
    import orjson

    out = set()
    for v in store.history_versions(None, None, count=1_000_000):  # type: ignore[attr-defined]
        content = orjson.dumps(v.resource, option=orjson.OPT_SORT_KEYS) if v.resource else None
        out.add((v.resource_type, v.id, v.version_id, v.deleted, content))
    return out


def ingest_site_samples(store: Store) -> int:
    """Every shipped site sample message through the real ingest (all seven resource types);
    returns how many resources changed."""
    from pathlib import Path

    from gateway.adapters.loader import EXAMPLE_SITES, load_network
    from gateway.bus.settings import BusSettings
    from gateway.ingest import IngestService

    service = IngestService(store, load_network(EXAMPLE_SITES), b"k" * 32,
                            node_id=BusSettings().node_id)  # as gateway replay will
    changed = 0
    for path in sorted(Path(EXAMPLE_SITES, "samples").glob("*/*.hl7")):
        outcome = process(service, path.read_bytes(), "file")
        assert outcome.status == "processed", (path, outcome.status)
        changed += outcome.changed
    return changed

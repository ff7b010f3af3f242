"""An edge in a separate process for the kill -9 test: writes resources through the store
(one transaction per "message") while the outbox relay publishes them to Kafka.

    python tests/bus/edge_process.py DB_URL BOOTSTRAP PREFIX write   # until killed
    python tests/bus/edge_process.py DB_URL BOOTSTRAP PREFIX drain   # relay, exit when empty
"""

from __future__ import annotations

import asyncio
import sys

from gateway.bus.base import inbound_headers
from gateway.bus.components import make_relay
from gateway.bus.kafka import KafkaBus
from gateway.bus.settings import BusSettings
from gateway.store.sql import SqlStore


def write_one(store: SqlStore, n: int) -> None:
    headers = inbound_headers(site="ospedale-a", message_id=f"K{n:06d}")
    with store.transaction() as tx:
        tx.put({"resourceType": "Patient", "id": f"p{n % 50}", "gender": "female",
                "birthDate": f"19{n % 100:02d}"}, headers=headers, source="urn:edge")
        tx.put({"resourceType": "Observation", "id": f"o{n}", "status": "final",
                "code": {"text": "CD3+ count"}, "valueQuantity": {"value": n}},
               headers=headers, source="urn:edge")


async def main(url: str, bootstrap: str, prefix: str, mode: str) -> None:
    store = SqlStore(url)
    store.migrate()
    settings = BusSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, node_id="edge-k9",
                           relay_batch_size=50)
    relay = make_relay(settings, store, KafkaBus(settings))
    if mode == "drain":
        await relay.drain()
        print("drained", flush=True)  # noqa: T201
        return
    await relay.start()
    n = 0
    while True:
        await asyncio.to_thread(write_one, store, n)
        relay.notify(2)
        n += 1
        print(f"committed {n}", flush=True)  # noqa: T201
        await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))

"""OpenTelemetry (the SDK's in-memory exporter): one message is one trace from its MLLP
receipt through the group commit and the relay to the hub projector, under the trace id the
bus's traceparent already carried; an API request continues its own traceparent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.mapping.provenance import message_hash
from gateway.observability.tracing import Tracing
from gateway.runtime import Gateway
from tests.test_runtime import msa, oru, send


async def test_one_trace_spans_receipt_commit_relay_and_projector(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var", sites=EXAMPLE_SITES,
                        bus=BusSettings(node_id="test-node",
                                        hub_database_url=f"sqlite:///{tmp_path / 'hub.db'}"))
    gw = Gateway(settings, tracing=Tracing(exporter, batch=False))
    await gw.start()
    try:
        [ack] = await send(gw, oru("TRC0001"))
        assert msa(ack)[0] == "AA"
        assert gw.service is not None
        digest = message_hash(gw.service.key, "hpg23", "HPG23", "TRC0001")
        trace_id = int(digest[:32], 16)
        for _ in range(200):  # until the projector applied the message's resources
            names = {s.name for s in exporter.get_finished_spans()
                     if s.context.trace_id == trace_id}
            if "projector apply" in names:
                break
            await asyncio.sleep(0.05)
        mine = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        by_name: dict[str, list] = {}
        for span in mine:
            by_name.setdefault(span.name, []).append(span)
        [receipt] = by_name["hl7v2 receipt"]
        assert receipt.context.span_id == int(digest[32:48], 16)  # the bus's traceparent
        assert receipt.attributes["gateway.site"] == "hpg23"
        assert receipt.attributes["hl7v2.ack_code"] == "AA"
        [commit] = by_name["ingest map+commit"]
        assert commit.parent.span_id == receipt.context.span_id
        relays = by_name["relay publish"]
        assert relays and all(r.parent.span_id == receipt.context.span_id for r in relays)
        projected = by_name["projector apply"]
        assert {p.parent.span_id for p in projected} <= {r.context.span_id for r in relays}
        assert "TRC0001" not in str([dict(s.attributes or {}) for s in mine])
        # an API read continues the caller's traceparent
        caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{gw.http_port}/fhir/Observation",
                               headers={"traceparent": caller})
        assert r.status_code == 200
        [server] = [s for s in exporter.get_finished_spans()
                    if s.context.trace_id == 0x0af7651916cd43dd8448eb211c80319c]
        assert server.name == "HTTP GET /fhir/{rtype}"
        assert server.parent.span_id == 0xb7ad6b7169203331
    finally:
        await gw.stop()


async def test_without_otel_no_tracer_is_set_anywhere(tmp_path: Path) -> None:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var", sites=EXAMPLE_SITES,
                        bus=BusSettings(node_id="test-node"))
    gw = Gateway(settings)
    await gw.start()
    try:
        assert gw.tracing is None and gw.bus.relay.tracer is None
    finally:
        await gw.stop()

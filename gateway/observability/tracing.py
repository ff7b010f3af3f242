"""OpenTelemetry traces (optional: ``gateway serve --otel`` or OTEL_EXPORTER_OTLP_ENDPOINT;
the ``[otel]`` extra). Off, nothing here is imported and every hook is a ``None`` check.

One inbound message is one trace, and its ids are the ones the bus already carries: the
ingest writes ``traceparent = 00-<hash[:32]>-<hash[32:48]>-01`` from the keyed hash of
MSH-10 on every outbox row. The receipt span *is* that parent (trace id ``hash[:32]``, span
id ``hash[32:48]``), so that every later span joins it:

    hl7v2 receipt (MLLP/HTTP receive → ACK)
      ├─ ingest map+commit (the group commit that stored it)
      └─ relay publish (outbox → bus; the record's traceparent is now this span)
           └─ projector apply (bus → hub store)

and ``HTTP <route>`` server spans continue a request's own ``traceparent`` header (an API
read). Span attributes: site, message type, ACK code, topic, route; no patient data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.errors import ConfigError


class _ChosenIds:
    """An id generator that hands out ids chosen by the caller for the next span (the
    receipt span's ids are the bus's traceparent), random ones otherwise."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        self._random = RandomIdGenerator()
        self._next = threading.local()

    def choose(self, trace_id: int, span_id: int) -> None:
        self._next.ids = (trace_id, span_id)

    def generate_trace_id(self) -> int:
        ids = getattr(self._next, "ids", None)
        return ids[0] if ids else self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return False  # a receipt's trace id is the bus's, derived from a keyed hash

    def generate_span_id(self) -> int:
        ids = getattr(self._next, "ids", None)
        if ids:
            self._next.ids = None
            return int(ids[1])
        return self._random.generate_span_id()


class Tracing:
    """One per gateway, with its own ``TracerProvider`` (no process-wide provider)."""

    def __init__(self, exporter: Any = None, *, service: str = "plagencell-gateway",
                 node: str = "", batch: bool = True) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        except ImportError as exc:
            raise ConfigError("--otel needs the OpenTelemetry SDK: pip install "
                              "'plagencell-gateway[otel]'") from exc
        if exporter is None:
            exporter = _otlp_exporter()
        self.ids = _ChosenIds()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service, "service.instance.id": node}),
            id_generator=self.ids, shutdown_on_exit=False)  # type: ignore[arg-type]
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("gateway")

    def shutdown(self) -> None:
        self.provider.shutdown()

    # --- helpers ------------------------------------------------------------------------
    @staticmethod
    def parent(traceparent: str | None) -> Any:
        """The context of a W3C ``traceparent`` value (None: a new trace)."""
        if not traceparent:
            return None
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        return TraceContextTextMapPropagator().extract({"traceparent": traceparent})

    @staticmethod
    def traceparent_of(span: Any) -> str:
        ctx = span.get_span_context()
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"

    # --- the message's way ---------------------------------------------------------------
    def receipt(self, digest: str, seconds: float, attributes: dict[str, Any],
                commit_ns: tuple[int, int] | None) -> None:
        """The receipt span of a message answered ``seconds`` ago (now: its ACK), with the
        ids of its bus traceparent; and its group commit as a child."""
        end = time.time_ns()
        start = end - int(seconds * 1e9)
        from opentelemetry.context import Context

        self.ids.choose(int(digest[:32], 16), int(digest[32:48], 16))
        span = self.tracer.start_span("hl7v2 receipt", context=Context(), start_time=start,
                                      attributes=attributes)
        if commit_ns is not None:
            from opentelemetry import trace

            inside = trace.set_span_in_context(span)
            commit = self.tracer.start_span("ingest map+commit", context=inside,
                                            start_time=max(start, commit_ns[0]))
            commit.end(end_time=commit_ns[1])
        span.end(end_time=end)

    def relay_spans(self, records: Sequence[Any], topic_attr: str = "messaging.destination"
                    ) -> list[Any]:
        """One span per record about to be published, child of the record's traceparent;
        the record then carries the span's own traceparent (the projector continues it)."""
        spans = []
        for record in records:
            span = self.tracer.start_span(
                "relay publish", context=self.parent(record.headers.get("traceparent")),
                attributes={topic_attr: record.topic, "gateway.resource_type":
                            record.key.split("/", 1)[0]})
            record.headers["traceparent"] = self.traceparent_of(span)
            spans.append(span)
        return spans

    @staticmethod
    def end(spans: Iterable[Any]) -> None:
        for span in spans:
            span.end()

    def applied(self, records: Iterable[Any], start_ns: int) -> None:
        """The projector applied ``records`` (one store transaction from ``start_ns``)."""
        for record in records:
            span = self.tracer.start_span(
                "projector apply", context=self.parent(record.headers.get("traceparent")),
                start_time=start_ns, attributes={"messaging.destination": record.topic})
            span.end()

    def server_span(self, method: str, traceparent: str | None) -> Any:
        return self.tracer.start_span(f"HTTP {method}", context=self.parent(traceparent))


def _otlp_exporter() -> Any:
    """The OTLP/HTTP exporter, configured from the standard OTEL_EXPORTER_OTLP_* variables."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigError("--otel needs the OTLP exporter: pip install "
                          "'plagencell-gateway[otel]'") from exc
    return OTLPSpanExporter()

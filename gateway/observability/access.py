"""Access logs and request metrics: one line per HTTP request and per MLLP message.

HTTP (logger ``gateway.access``): method, the route *template* (``/fhir/{rtype}/{id}``,
never the raw path, which carries ids), status, duration and the caller's client id.
Requests that no route took (a 401 before routing, a 404) are named by their interaction
(``read``, ``search-type``…, from the path's shape) instead. ``/healthz`` is not logged
(orchestrators poll it), but counted.

MLLP: message type, MSH-10 as its keyed hash, ACK code, duration, peer address and the
certificate subject under mutual TLS. Never a value from a message or a path.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.observability.facts import MessageFacts
from gateway.observability.metrics import GatewayMetrics

access_log = logging.getLogger("gateway.access")
NOT_LOGGED = frozenset({"/healthz"})
AREAS = frozenset({"admin", "hl7v2", "lab-exports", "auth", "metrics", "healthz", "console",
                   "docs", "redoc", "openapi.json", ".well-known"})
_GET = ("GET", "HEAD")
_NAME = re.compile(r"^[$_.]?[A-Za-z][A-Za-z-]{0,40}$")  # $everything, _history, .well-known


def interaction_of(method: str, path: str) -> str:
    """The FHIR interaction of a request (``read``, ``vread``, ``search-type``…), or the
    area of a non-FHIR one (``admin``, ``hl7v2``…): a bounded set, no ids."""
    if path != "/fhir" and not path.startswith("/fhir/"):
        area = path.strip("/").split("/", 1)[0]
        return area if area in AREAS else "other"
    parts = path.rstrip("/").split("/")[2:]
    if not parts:
        return "batch" if method == "POST" else "search-system"
    if parts[0] == "metadata":
        return "capabilities"
    if any(p.startswith("$") for p in parts):
        return "operation"
    if parts[0] == "_history":
        return "history-system"
    if parts[0].startswith((".", "_")):
        return "other"
    return _on_type(method, parts)


def _on_type(method: str, parts: list[str]) -> str:
    n = len(parts)
    if method in _GET:
        if n == 1:
            return "search-type"
        if parts[1] == "_history":
            return "history-type"
        return {2: "read", 3: "history-instance", 4: "vread"}.get(n, "other")
    if method == "POST":
        return {1: "create"}.get(n, "search-type" if parts[-1] == "_search" else "other")
    return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "other")


def route_of(scope: Scope, interaction: str) -> str:
    """The route template that took the request; for one that no route took (a 401
    before routing, the FHIR API's fast read path) the same shape made from the path."""
    template = getattr(scope.get("route"), "path", None)
    if template:
        return str(template)
    path = scope["path"]
    if path == "/fhir" or path.startswith("/fhir/"):
        return fhir_template(path.rstrip("/").split("/")[2:])
    return f"({interaction})"


def fhir_template(parts: list[str]) -> str:
    """``/fhir/Observation/abc/_history/2`` → ``/fhir/{rtype}/{id}/_history/{vid}``."""
    shape = ["/fhir"]
    for i, part in enumerate(parts):
        if part.startswith(("$", "_")) or (i == 0 and part in ("metadata", ".well-known")):
            shape.append(part if _NAME.match(part) else "{?}")
        elif i == 0:
            shape.append("{rtype}")
        else:
            shape.append("{vid}" if i > 0 and parts[i - 1] == "_history" else "{id}")
    return "/".join(shape)


def client_of(scope: Scope) -> str:
    principal = scope.get("state", {}).get("principal")
    return str(principal.client_id) if principal is not None else "-"


class AccessMiddleware:
    """Installed outside the authentication middleware (inside the audit's): times the
    request including the 401/403 that authentication answers itself, and names the
    caller it found."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics | None = None,
                 tracing: Any = None) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing  # gateway.observability.tracing.Tracing, when --otel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        span = self._span(scope) if self.tracing is not None else None

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._done(scope, status, time.perf_counter() - started)
            if span is not None:
                route = route_of(scope, interaction_of(scope["method"], scope["path"]))
                span.update_name(f"HTTP {scope['method']} {route}")
                span.set_attributes({"http.route": route, "http.response.status_code": status})
                span.end()

    def _span(self, scope: Scope) -> Any:
        """A server span continuing the request's own ``traceparent`` header, if any."""
        header = dict(scope.get("headers") or ()).get(b"traceparent")
        return self.tracing.server_span(scope["method"],
                                        header.decode("latin-1") if header else None)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        method, path = scope["method"], scope["path"]
        interaction = interaction_of(method, path)
        if self.metrics is not None:
            self.metrics.observe_request(interaction, status, seconds)
        if path in NOT_LOGGED:
            return
        route, client = route_of(scope, interaction), client_of(scope)
        access_log.info("HTTP %s %s %d %.1fms client=%s", method, route, status,
                        seconds * 1000, client,
                        extra={"access": {"kind": "http", "method": method, "route": route,
                                          "interaction": interaction, "status": status,
                                          "duration_ms": round(seconds * 1000, 2),
                                          "client": client}})


def log_mllp(facts: MessageFacts, ack: str, seconds: float, peer: Any) -> None:
    """The access line of one MLLP message (or batch)."""
    subject = getattr(peer, "cert_subject", None) or "-"
    access_log.info("MLLP %s %s %s %s %.1fms peer=%s client=%s", facts.message_type,
                    facts.msh10, facts.site, ack, seconds * 1000, peer, subject,
                    extra={"access": {"kind": "mllp", "type": facts.message_type,
                                      "msh10": facts.msh10, "site": facts.site, "ack": ack,
                                      "duration_ms": round(seconds * 1000, 2),
                                      "peer": str(peer), "client": subject}})

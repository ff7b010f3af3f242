"""What each HTTP request needs: one table from (method, path) to a ``Need``.

| request | needs |
|---|---|
| ``/healthz``, ``/fhir/metadata``, ``…/smart-configuration``, ``/auth/*`` | nothing |
| ``GET /fhir/{type}/{id}[/_history[/{vid}]]``, ``/fhir/{type}/_history`` | ``r`` on it |
| ``GET /fhir/_history`` | ``r`` on every type (``system/*.r``) |
| ``GET /fhir/{type}``, ``POST /fhir/{type}/_search`` | ``s`` on the type |
| ``POST /fhir/{type}`` / ``PUT`` / ``DELETE`` | ``c`` / ``u`` / ``d`` on the type |
| ``POST /fhir`` (batch/transaction) | a valid token; each entry is checked (``entry_need``) |
| ``/fhir/ConceptMap/$translate`` | ``r`` on ConceptMap |
| ``/fhir[/{type}]/$export``, ``$export-poll…``, ``$export-file…`` | ``system/gateway.export`` |
| ``/fhir/$viewdefinition-run`` | a valid token; the route asks ``r`` on the view's type |
| other ``$operations`` | ``r`` on their type (``*`` at system level) |
| ``/fhir/AuditEvent…`` | ``system/gateway.audit`` |
| ``/admin/messages/{id}/raw`` | ``system/gateway.raw`` |
| ``/admin…`` | ``system/gateway.admin`` |
| ``GET /metrics`` | ``system/gateway.metrics`` |
| ``POST /hl7v2`` | ``system/gateway.ingest`` (MSH-4 checked by the route) |
| ``POST /lab-exports?site=X`` | ``system/gateway.ingest`` and site X among the token's sites |
| ``/docs``, ``/redoc``, ``/openapi.json`` and their assets | a valid token |
| ``/console…`` | nothing here: the console logs people in (session cookie) and asks |
| | each page's scope of the user (``gateway.console.web``) |
| anything else | ``system/gateway.admin`` (fail closed) |

SMART v2 has no separate permission for history: history is a read (``r``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from gateway.security.principal import ADMIN, AUDIT, EXPORT, INGEST, METRICS, RAW, Principal

OPEN_PATHS = frozenset({"/healthz", "/fhir/metadata", "/fhir/.well-known/smart-configuration",
                        "/.well-known/smart-configuration", "/auth/token",
                        "/auth/jwks"})
DOC_PREFIXES = ("/docs", "/redoc", "/openapi.json", "/static-offline-docs")
WRITE = {"POST": "c", "PUT": "u", "DELETE": "d"}
# the kick-off, the status URL and the files of a Bulk export: the status and file routes
# answer only the job's owner, so they need the export scope and no read on every type
EXPORT_OPERATIONS = frozenset({"$export", "$export-poll", "$export-file"})


@dataclass(frozen=True, slots=True)
class Need:
    """``open``: no token; ``token``: any valid token; else a gateway ``scope`` or a SMART
    (``rtype``, ``interaction``); ``site``: an ingest site the token must be bound to."""

    open: bool = False
    scope: str | None = None
    rtype: str | None = None
    interaction: str | None = None
    site: str | None = None

    def refusal(self, principal: Principal) -> str | None:
        """Why ``principal`` may not do this (None: it may)."""
        if self.scope is not None and not principal.has(self.scope):
            return f"this request needs the scope {self.scope}"
        if self.rtype is not None and self.interaction is not None \
                and not principal.may(self.rtype, self.interaction):
            return (f"this request needs a scope granting {self.interaction!r} on "
                    f"{self.rtype} (e.g. system/{self.rtype}.{self.interaction})")
        if self.site is not None and not principal.may_send_for(self.site):
            return f"the token is not bound to site {self.site}"
        return None


OPEN = Need(open=True)
TOKEN = Need()


def need_of(method: str, path: str, query: bytes = b"") -> Need:
    if path in OPEN_PATHS:
        return OPEN
    if path == "/fhir" or path.startswith("/fhir/"):
        return fhir_need(method, path.rstrip("/").split("/")[2:])
    if path.startswith(DOC_PREFIXES):
        return TOKEN
    if path == "/console" or path.startswith("/console/"):
        return OPEN
    if path == "/hl7v2":
        return Need(scope=INGEST)
    if path == "/lab-exports":
        site = dict(parse_qsl(query.decode("latin-1"))).get("site", "")
        return Need(scope=INGEST, site=site)
    if path.startswith("/admin/messages/") and path.endswith("/raw"):
        return Need(scope=RAW)
    if path == "/metrics":
        return Need(scope=METRICS)
    return Need(scope=ADMIN)


def fhir_need(method: str, parts: list[str]) -> Need:
    """The need of a FHIR request on ``/fhir/<parts…>`` (also of one Bundle entry)."""
    if not parts:  # POST /fhir: batch or transaction, every entry checked on its own
        return TOKEN
    if parts[0] == "AuditEvent":
        return Need(scope=AUDIT)
    operation = next((p for p in parts if p.startswith("$")), None)
    if operation is not None:
        return _operation(operation, parts)
    if parts[0] == "_history":
        return Need(rtype="*", interaction="r")
    return entry_need(method, parts)


def entry_need(method: str, parts: list[str]) -> Need:
    """The need of one FHIR interaction on ``/{type}[/{id}[/_history[/{vid}]]]``; also
    the need of one batch/transaction entry."""
    rtype = parts[0]
    if method in ("GET", "HEAD"):
        searching = len(parts) == 1
        return Need(rtype=rtype, interaction="s" if searching else "r")
    if method == "POST" and len(parts) == 2 and parts[1] == "_search":
        return Need(rtype=rtype, interaction="s")
    if method == "PATCH":
        method = "PUT"
    if method not in WRITE:
        return Need(scope=ADMIN)  # no FHIR interaction: fail closed
    return Need(rtype=rtype, interaction=WRITE[method])


def _operation(operation: str, parts: list[str]) -> Need:
    if operation in EXPORT_OPERATIONS:
        return Need(scope=EXPORT)
    if operation == "$viewdefinition-run" and len(parts) == 1:
        return TOKEN  # the type it reads is in the view: gateway.api.fhir.views checks it
    rtype = parts[0] if not parts[0].startswith("$") else "*"
    return Need(rtype=rtype, interaction="r")

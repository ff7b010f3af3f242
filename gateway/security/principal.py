"""``Principal``: the caller of one HTTP request, as every endpoint sees it.

The authentication middleware puts one on ``request.state.principal``; endpoints read it
with ``principal_of(request)``. Without authentication configured (loopback demo, or
``--insecure-no-auth``) every request carries ``ANONYMOUS``, which may do everything.

Scopes are SMART App Launch v2 scopes (``system/Observation.rs``, ``system/*.cruds``;
v1 ``.read``/``.write``/``.*`` are read as ``rs``/``cud``/``cruds``) plus the gateway's own:

| scope | grants |
|---|---|
| ``system/gateway.admin`` | ``/admin`` (messages, replay, reload, unmapped codes) |
| ``system/gateway.raw`` | raw message bodies (identity data; served by an edge only) |
| ``system/gateway.audit`` | ``/fhir/AuditEvent`` |
| ``system/gateway.ingest`` | ``POST /hl7v2`` and lab exports, for the client's ``sites`` |
| ``system/gateway.export`` | Bulk Data ``$export``, ViewDefinition runs (``.rs`` on the types) |
| ``system/gateway.metrics`` | ``/metrics`` (Prometheus); nothing else, not implied by admin |

Data restrictions: ``studies`` (ResearchStudy ids) and ``sites`` (site ids). ``None`` means
unrestricted; an empty set means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

ADMIN = "system/gateway.admin"
RAW = "system/gateway.raw"
AUDIT = "system/gateway.audit"
INGEST = "system/gateway.ingest"
EXPORT = "system/gateway.export"
METRICS = "system/gateway.metrics"
GATEWAY_SCOPES = frozenset({ADMIN, RAW, AUDIT, INGEST, EXPORT, METRICS})

INTERACTIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


def scope_grants(scope: str, resource_type: str, interaction: str) -> bool:
    """Whether one SMART scope grants ``interaction`` (one of ``c r u d s``) on a type."""
    context, _, rest = scope.partition("/")
    if context not in ("system", "user", "patient") or "." not in rest:
        return False
    rtype, _, perms = rest.partition(".")
    if rtype not in ("*", resource_type):
        return False
    perms = perms.split("?", 1)[0]
    perms = _V1.get(perms, perms)
    return interaction in perms and all(ch in INTERACTIONS for ch in perms)


@lru_cache(maxsize=4096)
def _granted(scopes: frozenset[str], resource_type: str, interaction: str) -> bool:
    """Whether any of ``scopes`` grants it (cached: a token's scopes are asked again and
    again, and a frozenset keeps its hash)."""
    return any(scope_grants(s, resource_type, interaction) for s in scopes)


@dataclass(frozen=True)
class Principal:
    client_id: str
    scopes: frozenset[str] = frozenset()
    studies: frozenset[str] | None = None
    sites: frozenset[str] | None = None
    anonymous: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def may(self, resource_type: str, interaction: str) -> bool:
        """SMART v2: may this caller do ``interaction`` (c r u d s) on ``resource_type``?"""
        if self.anonymous:
            return True
        return _granted(self.scopes, resource_type, interaction)

    def has(self, scope: str) -> bool:
        """A gateway scope (``ADMIN``, ``RAW``, ``AUDIT``, ``INGEST``, ``EXPORT``,
        ``METRICS``)."""
        return self.anonymous or scope in self.scopes

    @property
    def restricted(self) -> bool:
        return self.studies is not None or self.sites is not None

    def may_send_for(self, site: str) -> bool:
        return self.has(INGEST) and (self.sites is None or site in self.sites)


ANONYMOUS = Principal(client_id="anonymous", anonymous=True)


def principal_of(request: Any) -> Principal:
    """The caller of a Starlette/FastAPI request (``ANONYMOUS`` when auth is off)."""
    return getattr(request.state, "principal", None) or ANONYMOUS

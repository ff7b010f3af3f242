"""The audit trail (issue 10, item 5): every HTTP request becomes a FHIR AuditEvent (IHE
BALP) in an append-only, hash-chained table of the node's own store.

* ``event``: one request's facts → one AuditEvent (pure; privacy rules there)
* ``chain``: the sha256 chain and ``verify`` (pure)
* ``trail``: the bounded queue and the writer thread
* ``middleware``: the outermost ASGI middleware that records every request
* ``api``: ``/fhir/AuditEvent`` (search and read, audit scope only)
* storage: ``gateway.store.audit``; command: ``gateway audit verify``
"""

from __future__ import annotations

from .api import ENTRY as CAPABILITY_ENTRY
from .api import audit_router
from .middleware import AuditMiddleware, install_audit
from .trail import AuditTrail

__all__ = ["CAPABILITY_ENTRY", "AuditMiddleware", "AuditTrail", "audit_router", "install_audit"]

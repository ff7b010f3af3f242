"""``AuditMiddleware``: records every HTTP request on the audit trail, after its response.

It must be the outermost middleware (``install_audit`` adds it last, which Starlette makes
outermost), so that it also sees the 401 and 403 that the authentication middleware answers
itself. Per request it collects the ``Facts`` and queues them (``AuditTrail.record``);
nothing is formatted or written on the request's path.

Who: the ``Principal`` on ``request.state.principal`` (its client id; ``anonymous`` when
authentication is off); without one, ``unauthenticated`` when the answer is 401, else
``anonymous``. Endpoints add what only they know in ``request.state.audit``:
``{"subtype": …, "entity": ["Type/id", …], "query": …, "agent": …}`` (``agent``: for
``POST /auth/token``, which runs without a principal, the client id that asked, issued or
refused; it takes the place of the principal's).

``/healthz`` is not recorded: orchestrators poll it every few seconds, it carries no data
and no caller. When the trail's queue is full, every other request is answered 503 with an
OperationOutcome and not run (``gateway.audit.trail``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.audit.event import ANONYMOUS, UNAUTHENTICATED, Facts
from gateway.audit.trail import AuditTrail
from gateway.fhir import FHIR_MEDIA_TYPE

NOT_RECORDED = frozenset({"/healthz"})
FULL = orjson.dumps({"resourceType": "OperationOutcome", "issue": [{
    "severity": "error", "code": "transient",
    "diagnostics": "the audit trail cannot take more events (its store is unavailable); "
                   "the request was not run: retry later"}]})


def _agent(state: dict[str, Any], status: int) -> str:
    named = (state.get("audit") or {}).get("agent")  # the token route: who asked
    if isinstance(named, str) and named:
        return named
    principal = state.get("principal")
    if principal is not None:
        return str(principal.client_id)
    return UNAUTHENTICATED if status == 401 else ANONYMOUS


class AuditMiddleware:
    def __init__(self, app: ASGIApp, trail: AuditTrail) -> None:
        self.app = app
        self.trail = trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NOT_RECORDED:
            await self.app(scope, receive, send)
            return
        if not self.trail.admits():
            self.trail.refuse()
            await _refuse(send)
            return
        state = scope.setdefault("state", {})
        status = 500  # unless the app answers: an exception escaped it
        recorded = False

        def record() -> None:
            nonlocal recorded
            recorded = True
            client = scope.get("client")
            details = state.get("audit")
            self.trail.record(Facts(
                scope["method"], scope["path"], scope["query_string"].decode("latin-1"),
                status, _agent(state, status), client[0] if client else None, time.time(),
                details if isinstance(details, dict) else None))

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                record()  # before the client has its answer: queued when it reads on
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not recorded:
                record()


async def _refuse(send: Send) -> None:
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", FHIR_MEDIA_TYPE.encode()),
                            (b"content-length", str(len(FULL)).encode()),
                            (b"retry-after", b"5")]})
    await send({"type": "http.response.body", "body": FULL})


def install_audit(app: FastAPI, trail: AuditTrail) -> None:
    """Add the middleware as the outermost one: call after every other ``add_middleware``."""
    app.add_middleware(AuditMiddleware, trail=trail)

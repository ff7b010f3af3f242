"""One ASGI middleware for the whole HTTP application: who calls, may they, and the
headers every answer carries.

With a ``TokenService`` every request except the open ones (``enforce.OPEN_PATHS``) needs
``Authorization: Bearer <access token>``: none or a bad one → 401 with
``WWW-Authenticate: Bearer realm="plagencell"…`` and an OperationOutcome; a valid one
without the needed scope → 403. The caller goes on ``request.state.principal``. Without
one (the loopback demo, ``--insecure-no-auth``) requests run as ``ANONYMOUS``.

Every answer gets ``X-Content-Type-Options: nosniff``, and ``Cache-Control: no-store``
unless it is a documentation asset.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.fhir import FHIR_MEDIA_TYPE
from gateway.security.enforce import need_of
from gateway.security.principal import Principal
from gateway.security.tokens import OAuthError, TokenService

REALM = "plagencell"


def _outcome(code: str, text: str) -> bytes:
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": text}]})


async def refuse(send: Send, status: int, text: str, error: str | None = None) -> None:
    """401 (``login``) or 403 (``forbidden``) as an OperationOutcome."""
    headers = [(b"content-type", FHIR_MEDIA_TYPE.encode()),
               (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
    if status == 401:
        challenge = f'Bearer realm="{REALM}"'
        if error:  # the reason may quote what the caller sent: printable ASCII only
            description = "".join(c if " " <= c <= "~" and c not in '"\\' else "?"
                                  for c in text)
            challenge += f', error="{error}", error_description="{description}"'
        headers.append((b"www-authenticate", challenge.encode()))
    body = _outcome("login" if status == 401 else "forbidden", text)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    def __init__(self, app: ASGIApp, tokens: TokenService | None) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.tokens is not None and not await self._admitted(scope, send):
            return
        await self.app(scope, receive, _with_headers(scope["path"], send))

    async def _admitted(self, scope: Scope, send: Send) -> bool:
        need = need_of(scope["method"], scope["path"], scope.get("query_string", b""))
        if need.open:
            return True
        token = _bearer(scope)
        if token is None:
            await refuse(send, 401, "this request needs an access token (Authorization: "
                         "Bearer …; see /.well-known/smart-configuration)")
            return False
        try:
            principal = await self._principal(token)
        except OAuthError as exc:
            await refuse(send, 401, exc.description, exc.error)
            return False
        scope.setdefault("state", {})["principal"] = principal
        reason = need.refusal(principal)
        if reason is not None:
            await refuse(send, 403, f"client {principal.client_id}: {reason}")
            return False
        return True

    async def _principal(self, token: str) -> Principal:
        assert self.tokens is not None
        cached = self.tokens.cached(token)
        if cached is not None:
            return cached
        # a first sight verifies a signature (and may fetch an OIDC issuer's keys)
        principal: Principal = await run_in_threadpool(self.tokens.principal, token)
        return principal


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = str(value.decode("latin-1")).partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")


def _with_headers(path: str, send: Send) -> Send:
    no_store = not path.startswith("/static-offline-docs")

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[Any] = list(message.get("headers", ()))
            names = [name.lower() for name, _ in headers]
            if b"x-content-type-options" not in names:
                headers.append(_NOSNIFF)
            if no_store and b"cache-control" not in names:  # a route's own choice wins
                headers.append(_NO_STORE)
            message = {**message, "headers": headers}
        await send(message)

    return sending

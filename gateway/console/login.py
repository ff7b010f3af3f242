"""Logging in and out of the console, and its static files.

* Local accounts: ``POST /console/login`` with the user's name and password (scrypt hash in
  the clients file's ``users:``), and the form's CSRF token.
* OpenID Connect (``--oidc-issuer`` with ``--oidc-console-client-id``): the authorization-
  code flow with PKCE (RFC 7636, S256). ``/console/login/oidc`` sends the browser to the
  issuer's ``authorization_endpoint`` with a fresh ``state``, ``nonce`` and code challenge
  kept in the session; ``/console/login/oidc/callback`` checks ``state``, trades the code
  and the verifier at the ``token_endpoint``, verifies the ID token (signature by the
  issuer's JWKS, ``iss``, ``aud`` = the console's client id, ``exp``, ``nonce``) and logs in
  the user whose ``oidc_subject`` is its ``sub``.
* ``POST /console/logout`` (CSRF token) forgets the session.

Without a clients file on loopback (anonymous mode) there is nothing to log in to.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gateway.console.session import COOKIE
from gateway.console.web import Console
from gateway.security.oidc import ALGORITHMS
from gateway.security.tokens import OAuthError
from gateway.security.users import check_login

STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
CALLBACK = "/console/login/oidc/callback"


def safe_next(value: Any) -> str:
    """Where to go after login: a console path only (no open redirect)."""
    text = value if isinstance(value, str) else ""
    if text.startswith("/console") and not text.startswith("//") and "\\" not in text:
        return text
    return "/console"


def login_router(console: Console) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    assets = {name: resources.files("gateway.console").joinpath("static", name).read_bytes()
              for name in STATIC}

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in assets:
            return Response("not found", 404, media_type="text/plain")
        return Response(assets[name], media_type=STATIC[name],
                        headers={"Cache-Control": "max-age=3600"})

    @router.get("/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        session, fresh = console.session(request)
        return console.render(request, session, fresh, "login.html", page="login",
                              next=safe_next(next), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        session, fresh = console.session(request)
        form = await request.form()
        if fresh or not session.csrf_ok(_text(form.get("csrf"))):
            return console.render(request, session, fresh, "refused.html", status=403,
                                  reason="the form's CSRF token is missing or stale: "
                                  "reload the login page and try again")
        name, password = _text(form.get("username")) or "", _text(form.get("password")) or ""
        user = await asyncio.to_thread(check_login, console.auth.users, name, password)
        if user is None:
            request.state.audit = {"agent": "unauthenticated"}
            return console.render(request, session, fresh, "login.html", status=401,
                                  page="login", next=safe_next(form.get("next")),
                                  error="wrong user name or password")
        return _logged_in(console, request, session, user.principal(), form.get("next"))

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session, fresh = console.session(request)
        form = await request.form()
        if fresh or not session.csrf_ok(_text(form.get("csrf"))):
            return console.render(request, session, fresh, "refused.html", status=403,
                                  reason="the form's CSRF token is missing or stale")
        if session.principal is not None:
            request.state.principal = session.principal
        console.sessions.drop(session)
        response = RedirectResponse("/console/login", 303)
        response.delete_cookie(COOKIE, path="/console")
        return response

    @router.get("/login/oidc")
    async def oidc_start(request: Request, next: str | None = None) -> Response:
        session, fresh = console.session(request)
        if not console.oidc_enabled:
            return console.render(request, session, fresh, "refused.html", status=404,
                                  reason="no OpenID Connect issuer is configured for the "
                                  "console (--oidc-issuer, --oidc-console-client-id)")
        assert console.auth.oidc is not None
        verifier = secrets.token_urlsafe(48)
        pending = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
                   "verifier": verifier, "next": safe_next(next)}
        session.pending = pending
        query = urlencode({
            "response_type": "code", "client_id": console.auth.settings.oidc_console_client_id,
            "redirect_uri": _callback(console, request), "scope": "openid",
            "state": pending["state"], "nonce": pending["nonce"],
            "code_challenge": _challenge(verifier), "code_challenge_method": "S256"})
        endpoint = str(console.auth.oidc.document.get("authorization_endpoint", ""))
        response = RedirectResponse(f"{endpoint}?{query}", 303)
        if fresh:
            console.set_cookie(response, session)
        return response

    @router.get("/login/oidc/callback")
    async def oidc_callback(request: Request, code: str | None = None,
                            state: str | None = None, error: str | None = None) -> Response:
        session, fresh = console.session(request)
        pending, session.pending = session.pending, {}
        if error or not code or not state or not pending or not hmac.compare_digest(
                str(pending.get("state")), state):
            request.state.audit = {"agent": "unauthenticated"}
            return console.render(request, session, fresh, "login.html", status=401,
                                  page="login", next="/console",
                                  error="the identity provider's answer does not belong to "
                                  "this login (state), or it refused: log in again")
        try:
            claims = await asyncio.to_thread(_id_token, console, request, code, pending)
        except (httpx.HTTPError, jwt.PyJWTError, OAuthError, ValueError, KeyError) as exc:
            request.state.audit = {"agent": "unauthenticated"}
            return console.render(request, session, fresh, "login.html", status=401,
                                  page="login", next="/console",
                                  error=f"the identity provider's login did not verify: {exc}")
        user = next((u for u in console.auth.users.values()
                     if u.oidc_subject and u.oidc_subject == claims.get("sub")), None)
        if user is None:
            request.state.audit = {"agent": "unauthenticated"}
            return console.render(request, session, fresh, "refused.html", status=403,
                                  reason="this identity is no console user (the clients "
                                  "file's users: need an oidc_subject for it)")
        return _logged_in(console, request, session, user.principal(), pending.get("next"))

    return router


def _logged_in(console: Console, request: Request, old: Any, principal: Any,
               next_path: Any) -> Response:
    session = console.sessions.login(old, principal)
    request.state.principal = principal
    response = RedirectResponse(safe_next(next_path), 303)
    console.set_cookie(response, session)
    return response


def _callback(console: Console, request: Request) -> str:
    root = console.public_url() if console.public_url else str(request.base_url)
    return root.rstrip("/") + CALLBACK


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _id_token(console: Console, request: Request, code: str,
              pending: dict[str, Any]) -> dict[str, Any]:
    """Trade the code (with the PKCE verifier) for tokens; the verified ID token's claims."""
    issuer = console.auth.oidc
    assert issuer is not None
    client_id = console.auth.settings.oidc_console_client_id
    answer = httpx.post(str(issuer.document["token_endpoint"]), data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": _callback(console, request), "client_id": client_id,
        "code_verifier": pending["verifier"]}, timeout=issuer.timeout)
    answer.raise_for_status()
    id_token = str(answer.json()["id_token"])
    header = jwt.get_unverified_header(id_token)
    if header.get("alg") not in ALGORITHMS:
        raise ValueError(f"ID token alg {header.get('alg')!r} is not accepted")
    key = issuer.key(str(header.get("kid")))
    claims: dict[str, Any] = jwt.decode(
        id_token, key.key, algorithms=[str(header.get("alg"))], audience=client_id,
        issuer=issuer.issuer, leeway=5, options={"require": ["exp", "iss", "aud", "sub"]})
    if not hmac.compare_digest(str(claims.get("nonce", "")), str(pending["nonce"])):
        raise ValueError("the ID token's nonce is not this login's")
    return claims


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None

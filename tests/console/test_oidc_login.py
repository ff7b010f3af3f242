"""Console login through the configured OpenID Connect issuer: the authorization-code flow
with PKCE, against a small identity provider served by uvicorn in the test (discovery,
authorize, token, JWKS; it checks the S256 code challenge as a real one does)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from gateway.runtime import Gateway
from gateway.security import keys
from tests.adapters.conftest import serving
from tests.console.support import browser, secured, text_of

CLIENT_ID = "plagencell-console"


class IdentityProvider:
    """Logs in ``subject`` at once (no form): what matters here is the protocol."""

    def __init__(self) -> None:
        self.url = ""
        self.key = keys.generate("RS384")
        self.subject = "olga-sub-1"
        self.codes: dict[str, dict[str, str]] = {}
        self.refusals: list[str] = []

    def app(self) -> Starlette:
        async def discovery(request: Request) -> JSONResponse:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks",
                                 "authorization_endpoint": f"{self.url}/authorize",
                                 "token_endpoint": f"{self.url}/token"})

        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse({"keys": [keys.public_jwk(self.key)]})

        async def authorize(request: Request) -> RedirectResponse:
            q = request.query_params
            assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
            assert q["code_challenge_method"] == "S256" and "openid" in q["scope"].split()
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"challenge": q["code_challenge"], "nonce": q["nonce"],
                                "redirect_uri": q["redirect_uri"]}
            back = urlencode({"code": code, "state": q["state"]})
            return RedirectResponse(f"{q['redirect_uri']}?{back}", 302)

        async def token(request: Request) -> JSONResponse:
            form = await request.form()
            grant = self.codes.pop(str(form.get("code")), None)
            verifier = str(form.get("code_verifier", ""))
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if grant is None or challenge != grant["challenge"] or \
                    form.get("redirect_uri") != grant["redirect_uri"]:
                self.refusals.append("invalid_grant")
                return JSONResponse({"error": "invalid_grant"}, 400)
            return JSONResponse({"access_token": "opaque", "token_type": "Bearer",
                                 "id_token": self.id_token(nonce=grant["nonce"])})

        return Starlette(routes=[Route("/.well-known/openid-configuration", discovery),
                                 Route("/jwks", jwks), Route("/authorize", authorize),
                                 Route("/token", token, methods=["POST"])])

    def id_token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "sub": self.subject, "aud": CLIENT_ID, "iat": now,
                "exp": now + 300, **claims}
        jwk = keys.public_jwk(self.key)
        return jwt.encode(body, self.key, algorithm=jwk["alg"], headers={"kid": jwk["kid"]})


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    found = IdentityProvider()
    with serving(found.app()) as url:
        found.url = url
        yield found


@pytest.fixture
async def gateway(tmp_path: Path, idp: IdentityProvider) -> AsyncIterator[Gateway]:
    gw = await secured(tmp_path, oidc_issuer=idp.url, oidc_console_client_id=CLIENT_ID)
    yield gw
    await gw.stop()


async def _to_idp(http: httpx.AsyncClient) -> httpx.Response:
    """The console's redirect to the issuer, followed: the issuer's redirect back."""
    start = await http.get("/console/login/oidc", params={"next": "/console/bus"})
    assert start.status_code == 303
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    async with httpx.AsyncClient() as outside:
        return await outside.get(start.headers["location"])


async def test_a_person_logs_in_through_the_issuer_with_pkce(
        gateway: Gateway, idp: IdentityProvider) -> None:
    async with browser(gateway) as http:
        login = await http.get("/console/login")
        back = await _to_idp(http)
        assert back.status_code == 302
        callback = await http.get(back.headers["location"])
        bus = await http.get("/console/bus")
    assert 'id="oidc"' in login.text
    assert callback.status_code == 303 and callback.headers["location"] == "/console/bus"
    assert bus.status_code == 200 and "user:olga" in text_of(bus)
    assert not idp.refusals


async def test_a_callback_of_another_login_is_refused(gateway: Gateway,
                                                      idp: IdentityProvider) -> None:
    async with browser(gateway) as http:
        back = await _to_idp(http)
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        forged = await http.get("/console/login/oidc/callback",
                                params={"code": code, "state": "someone-elses"})
        after = await http.get("/console")
    assert forged.status_code == 401 and "state" in forged.text
    assert after.status_code == 303  # not logged in


async def test_an_identity_that_is_no_console_user_is_refused(
        gateway: Gateway, idp: IdentityProvider) -> None:
    idp.subject = "somebody-else"
    async with browser(gateway) as http:
        back = await _to_idp(http)
        callback = await http.get(back.headers["location"])
        after = await http.get("/console")
    assert callback.status_code == 403 and "no console user" in callback.text
    assert after.status_code == 303

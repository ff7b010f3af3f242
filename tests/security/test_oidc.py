"""An external OpenID Connect issuer trusted by its JWKS (``--oidc-issuer``), against a
local issuer (discovery document + JWKS) served by uvicorn on a free port: its tokens are
accepted for registered clients (``azp``, else ``client_id``), limited to the clients
file's scopes; a rotated key is fetched on an unknown kid; foreign, expired and
unregistered-client tokens get 401."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.errors import ConfigError
from gateway.runtime import Gateway
from gateway.security import keys
from tests.adapters.conftest import serving
from tests.security.support import ApiClient, bearer, start, write_clients

DASHBOARD = ApiClient("dashboard", ["system/Observation.rs"])


class Issuer:
    """A minimal OIDC issuer: discovery, a JWKS whose keys the test rotates, signing."""

    def __init__(self) -> None:
        self.url = ""
        self.keys = [keys.generate("RS384")]
        self.jwks_requests = 0

    def app(self) -> Starlette:
        async def discovery(request: Any) -> JSONResponse:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

        async def jwks(request: Any) -> JSONResponse:
            self.jwks_requests += 1
            return JSONResponse({"keys": [keys.public_jwk(k) for k in self.keys]})

        return Starlette(routes=[Route("/.well-known/openid-configuration", discovery),
                                 Route("/jwks", jwks)])

    def token(self, key: Any = None, **claims: Any) -> str:
        key = key or self.keys[-1]
        now = int(time.time())
        body = {"iss": self.url, "sub": "service-account", "azp": DASHBOARD.id,
                "scope": "system/Observation.rs system/Patient.rs", "iat": now,
                "exp": now + 300, "aud": "plagencell", **claims}
        jwk = keys.public_jwk(key)
        return jwt.encode({k: v for k, v in body.items() if v is not None}, key,
                          algorithm=jwk["alg"], headers={"kid": jwk["kid"]})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    with serving(found.app()) as url:
        found.url = url
        yield found


@pytest.fixture
async def gateway(tmp_path: Path, issuer: Issuer) -> AsyncIterator[Gateway]:
    gw = await start(tmp_path, write_clients(tmp_path / "clients.yaml", DASHBOARD),
                     oidc_issuer=issuer.url, oidc_audience="plagencell")
    gw.auth.tokens.external.refresh_interval = 0  # type: ignore[union-attr]
    yield gw
    await gw.stop()


async def _get(gw: Gateway, path: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"http://127.0.0.1:{gw.http_port}{path}", headers=bearer(token))


async def test_a_token_of_the_issuer_is_accepted_within_the_clients_scopes(
        gateway: Gateway, issuer: Issuer) -> None:
    token = issuer.token()
    assert (await _get(gateway, "/fhir/Observation", token)).status_code == 200
    # the token says Patient.rs, the clients file does not: not granted
    assert (await _get(gateway, "/fhir/Patient", token)).status_code == 403


async def test_the_client_is_taken_from_client_id_when_there_is_no_azp(
        gateway: Gateway, issuer: Issuer) -> None:
    token = issuer.token(azp=None, client_id=DASHBOARD.id)
    assert (await _get(gateway, "/fhir/Observation", token)).status_code == 200


async def test_a_rotated_key_is_fetched_when_a_token_names_an_unknown_kid(
        gateway: Gateway, issuer: Issuer) -> None:
    before = issuer.jwks_requests
    issuer.keys.append(keys.generate("ES384"))
    assert (await _get(gateway, "/fhir/Observation", issuer.token())).status_code == 200
    assert issuer.jwks_requests == before + 1


@pytest.mark.parametrize(("claims", "words"), [
    ({"azp": "stranger"}, "not registered in the clients file"),
    ({"exp": int(time.time()) - 60}, "expired"),
    ({"aud": "someone-else"}, "does not verify"),
    ({"iss": "https://other-idp.example"}, "does not verify"),
    ({"azp": None}, "names no client"),
])
async def test_bad_issuer_tokens_get_401(gateway: Gateway, issuer: Issuer,
                                        claims: dict[str, Any], words: str) -> None:
    r = await _get(gateway, "/fhir/Observation", issuer.token(**claims))
    assert r.status_code == 401
    assert words in r.json()["issue"][0]["diagnostics"]


async def test_a_key_the_issuer_does_not_publish_gets_401(gateway: Gateway,
                                                         issuer: Issuer) -> None:
    r = await _get(gateway, "/fhir/Observation", issuer.token(key=keys.generate("RS384")))
    assert r.status_code == 401 and "no key of the OIDC issuer" in r.text


async def test_an_unreachable_issuer_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--oidc-issuer"):
        await start(tmp_path, write_clients(tmp_path / "clients.yaml", DASHBOARD),
                    oidc_issuer="http://127.0.0.1:9/realms/none")

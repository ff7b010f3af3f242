"""Trust an external OpenID Connect issuer (Keycloak, a hospital IdP) by its JWKS.

``--oidc-issuer URL``: the discovery document ``URL/.well-known/openid-configuration``
names the ``jwks_uri``; its keys are cached and fetched again when a token names an
unknown ``kid`` (at most once per ``refresh_interval`` seconds). A token is accepted when
its signature verifies, ``iss`` is the issuer, it has not expired and (with
``--oidc-audience``) ``aud`` names this gateway. Its client is the ``azp`` claim, or
``client_id`` when there is no ``azp`` (Keycloak sets ``azp``; RFC 9068 tokens carry
``client_id``); that client must be in the clients file, whose scopes and data
restrictions then apply.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import jwt

from gateway.errors import ConfigError
from gateway.security.tokens import Issued, invalid_token

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384"]


class OidcIssuer:
    def __init__(self, issuer: str, audience: str | None = None, *,
                 refresh_interval: float = 10.0, timeout: float = 5.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.refresh_interval = refresh_interval
        self.timeout = timeout
        self.jwks_uri: str | None = None
        self.document: dict[str, Any] = {}  # the discovery document (console login)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def discover(self) -> None:
        """Read the discovery document and the keys (at start: a wrong URL stops it)."""
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            doc = httpx.get(url, timeout=self.timeout).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ConfigError(f"--oidc-issuer: cannot read {url}: {exc}") from exc
        if str(doc.get("issuer", "")).rstrip("/") != self.issuer or not doc.get("jwks_uri"):
            raise ConfigError(f"--oidc-issuer: {url} names issuer {doc.get('issuer')!r} and "
                              f"jwks_uri {doc.get('jwks_uri')!r}; expected issuer {self.issuer}")
        self.jwks_uri = str(doc["jwks_uri"])
        self.document = doc
        self._refresh()

    def _refresh(self) -> None:
        assert self.jwks_uri is not None
        try:
            jwks = httpx.get(self.jwks_uri, timeout=self.timeout).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise invalid_token(f"the OIDC issuer's keys cannot be read now: {exc}") from exc
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("use", "sig") == "sig" and "kid" in jwk:
                try:
                    keys[jwk["kid"]] = jwt.PyJWK(jwk)
                except jwt.PyJWTError:
                    continue  # a key of a kind this gateway does not use
        self._keys, self._fetched = keys, time.monotonic()

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            if kid not in self._keys and \
                    time.monotonic() - self._fetched >= self.refresh_interval:
                self._refresh()
            found = self._keys.get(kid)
        if found is None:
            raise invalid_token(f"kid {kid!r} is no key of the OIDC issuer {self.issuer}")
        return found

    def __call__(self, token: str) -> Issued:
        """Verify a token of this issuer → (client id, scopes, exp)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise invalid_token("the access token is no JWT") from exc
        if header.get("alg") not in ALGORITHMS:
            raise invalid_token(f"access token alg {header.get('alg')!r} is not accepted")
        key = self.key(str(header.get("kid")))
        claims = self._decode(token, key, str(header["alg"]))
        client = claims.get("azp") or claims.get("client_id")
        if not client:
            raise invalid_token("the OIDC token names no client (azp or client_id)")
        return Issued(str(client), tuple(str(claims.get("scope", "")).split()),
                      float(claims["exp"]))

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            return jwt.decode(token, key.key, algorithms=[alg], issuer=self.issuer,
                              audience=self.audience, leeway=5,
                              options={"require": ["exp", "iss"],
                                       "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError as exc:
            raise invalid_token("the access token has expired") from exc
        except jwt.PyJWTError as exc:
            raise invalid_token(f"the OIDC access token does not verify: {exc}") from exc

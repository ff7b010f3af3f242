"""SMART Backend Services tokens: the client assertion in, the access token out, and the
check of an access token on every request.

The client assertion (RFC 7523, SMART ``client-confidential-asymmetric``) is a JWT signed
RS384 or ES384 by one of the client's registered keys (found by ``kid``), with
iss = sub = the client id, aud = the token URL, ``exp`` at most five minutes ahead and a
``jti`` never seen before. Seen ``jti`` values are kept in memory until their ``exp``
(one process; see docs/security.md). Access tokens are JWTs signed ES384 by the gateway's
own key; their verification is cached per token string until it expires.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.security.clients import Client
from gateway.security.keys import PrivateKey, public_jwk
from gateway.security.principal import Principal, scope_grants

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300
ACCESS_TOKEN_LIFETIME = 300
CACHE_MAX = 10_000


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: ``error`` code, ``description``, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_client(text: str) -> OAuthError:
    return OAuthError("invalid_client", text, 401)


def invalid_token(text: str) -> OAuthError:
    return OAuthError("invalid_token", text, 401)


def grant(requested: list[str], allowed: frozenset[str]) -> list[str]:
    """Requested ∩ allowed: a requested scope is granted when it is allowed as is, or
    when allowed scopes grant every one of its permissions on its type."""
    out = []
    for scope in requested:
        if scope in allowed:
            out.append(scope)
            continue
        context, _, rest = scope.partition("/")
        rtype, _, perms = rest.partition(".")
        if context == "system" and rtype and perms and perms.isalpha() \
                and all(any(scope_grants(a, rtype, p) for a in allowed) for p in perms):
            out.append(scope)
    return out


class SeenJtis:
    """``jti`` values of accepted assertions, each until its ``exp`` (replay refusal)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_use(self, client_id: str, jti: str, exp: float, now: float) -> bool:
        with self._lock:
            if len(self._seen) > CACHE_MAX:
                self._seen = {k: e for k, e in self._seen.items() if e > now}
            key = (client_id, jti)
            if self._seen.get(key, 0) > now:
                return False
            self._seen[key] = exp
            return True


@dataclass(frozen=True, slots=True)
class Issued:
    client_id: str
    scopes: tuple[str, ...]
    exp: float


UNKNOWN_CLIENT = "unknown-client"  # the audit agent of a token request naming no client


class TokenService:
    """Issues and checks access tokens for the clients of the clients file."""

    def __init__(self, clients: Mapping[str, Client], signing: PrivateKey, *,
                 issuer: str = "urn:plagencell:gateway",
                 external: Callable[[str], Issued] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.clients = clients
        self.signing = signing
        self.jwk = public_jwk(signing)
        self.issuer = issuer
        self.external = external  # an OIDC issuer's verification (``oidc.OidcIssuer``)
        self.clock = clock
        self.jtis = SeenJtis()
        self._cache: dict[str, tuple[Principal, float, Client]] = {}

    # -- the token endpoint --------------------------------------------------------------

    def token(self, form: Mapping[str, str], token_url: str) -> tuple[str, dict[str, Any]]:
        """``POST /auth/token`` (form fields) → (client id, the RFC 6749 token response)."""
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion, scope = form.get("client_assertion"), form.get("scope", "").split()
        if not assertion:
            raise OAuthError("invalid_request", "client_assertion is missing")
        if not scope:
            raise OAuthError("invalid_request", "scope is missing (space-separated SMART scopes)")
        client = self.check_assertion(assertion, token_url)
        granted = grant(scope, client.scopes)
        if not granted:
            raise OAuthError("invalid_scope", f"none of the requested scopes is allowed to "
                             f"client {client.id}")
        now = self.clock()
        claims = {"iss": self.issuer, "sub": client.id, "client_id": client.id,
                  "scope": " ".join(granted), "iat": int(now),
                  "exp": int(now) + ACCESS_TOKEN_LIFETIME, "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self.signing, algorithm="ES384",
                           headers={"kid": self.jwk["kid"]})
        return client.id, {"access_token": token, "token_type": "bearer",
                           "expires_in": ACCESS_TOKEN_LIFETIME, "scope": " ".join(granted)}

    def claimed_client(self, form: Mapping[str, str]) -> str:
        """Who a refused token request claims to be, for the audit trail: the assertion's
        unverified ``iss`` when it names a client of the clients file, else
        ``unknown-client`` (an arbitrary claimed text is never recorded)."""
        assertion = form.get("client_assertion") or ""
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return UNKNOWN_CLIENT
        iss = claims.get("iss") if isinstance(claims, dict) else None
        return iss if isinstance(iss, str) and iss in self.clients else UNKNOWN_CLIENT

    def check_assertion(self, assertion: str, token_url: str) -> Client:
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise invalid_client(f"client_assertion is no JWT: {exc}") from exc
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise invalid_client(f"client_assertion alg {alg!r} is not accepted (RS384, ES384)")
        iss = claims.get("iss")
        client = self.clients.get(str(iss))
        if client is None:
            # not repeated: the caller's text, which this answer's log line would carry
            raise invalid_client("the assertion's iss is no registered client")
        key = client.key(header.get("kid"))
        if not client.keys:
            raise invalid_client(f"client {client.id} has no key here: it gets its tokens "
                                 "from the OpenID Connect issuer")
        if key is None:
            raise invalid_client(f"kid {header.get('kid')!r} is no key of client {client.id}")
        verified = self._verify_assertion(assertion, key, alg, client.id, token_url)
        now = self.clock()
        if verified["exp"] > now + MAX_ASSERTION_LIFETIME + 5:
            raise invalid_client("client_assertion exp is more than 5 minutes ahead")
        if verified.get("sub") != client.id:
            raise invalid_client("client_assertion sub must equal iss (the client id)")
        if not self.jtis.first_use(client.id, str(verified["jti"]), verified["exp"], now):
            raise invalid_client("client_assertion jti was already used (replay)")
        return client

    def _verify_assertion(self, assertion: str, key: jwt.PyJWK, alg: str, client_id: str,
                          token_url: str) -> dict[str, Any]:
        if key.algorithm_name != alg:
            raise invalid_client(f"kid names a {key.algorithm_name} key, the assertion is {alg}")
        try:
            return jwt.decode(assertion, key.key, algorithms=[alg], audience=token_url,
                              issuer=client_id, leeway=5,
                              options={"require": ["exp", "iss", "sub", "aud", "jti"]})
        except jwt.ExpiredSignatureError as exc:
            raise invalid_client("client_assertion has expired (exp)") from exc
        except jwt.ImmatureSignatureError as exc:
            raise invalid_client("client_assertion is not yet valid (nbf/iat)") from exc
        except jwt.InvalidAudienceError as exc:
            raise invalid_client(f"client_assertion aud must be the token URL {token_url}") \
                from exc
        except jwt.InvalidSignatureError as exc:
            raise invalid_client("client_assertion signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_client(f"client_assertion lacks the {exc.claim} claim") from exc
        except jwt.PyJWTError as exc:
            raise invalid_client(f"client_assertion refused: {exc}") from exc

    # -- every request -------------------------------------------------------------------

    def cached(self, token: str) -> Principal | None:
        """The caller of a token verified before and not expired yet (None otherwise).
        The principal is rebuilt only when its client's entry changed (clients reload)."""
        hit = self._cache.get(token)
        if hit is None or hit[1] <= self.clock():
            return None
        principal, _, client = hit
        if self.clients.get(principal.client_id) is not client:
            principal, client = self._with_client(principal)
            self._cache[token] = (principal, hit[1], client)
        return principal

    def principal(self, token: str) -> Principal:
        """The caller of an access token (its verification cached until it expires)."""
        found = self.cached(token)
        if found is not None:
            return found
        issued = self._verify(token)
        principal, client = self._with_client(Principal(issued.client_id,
                                                        frozenset(issued.scopes)))
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[token] = (principal, issued.exp, client)
        return principal

    def _with_client(self, principal: Principal) -> tuple[Principal, Client]:
        """The client's current data restrictions; a removed client's tokens stop."""
        client = self.clients.get(principal.client_id)
        if client is None:
            raise invalid_token(f"client {principal.client_id} is no longer registered")
        return Principal(client.id, principal.scopes, client.studies, client.sites), client

    def _external(self, token: str) -> Issued:
        """A token of the trusted OIDC issuer: its client must be registered here, and it
        gets the token's scopes that the clients file allows it."""
        assert self.external is not None
        issued = self.external(token)
        client = self.clients.get(issued.client_id)
        if client is None:
            raise invalid_token(f"client {issued.client_id} of the OIDC token is not "
                                "registered in the clients file")
        return Issued(client.id, tuple(grant(list(issued.scopes), client.scopes)), issued.exp)

    def _verify(self, token: str) -> Issued:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise invalid_token("the access token is no JWT") from exc
        if kid != self.jwk["kid"]:
            if self.external is not None:
                return self._external(token)
            raise invalid_token("the access token was not issued by this gateway")
        try:
            claims = jwt.decode(token, self.signing.public_key(), algorithms=["ES384"],
                                issuer=self.issuer, options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise invalid_token("the access token has expired") from exc
        except jwt.PyJWTError as exc:
            raise invalid_token(f"the access token does not verify: {exc}") from exc
        return Issued(str(claims["sub"]), tuple(str(claims.get("scope", "")).split()),
                      float(claims["exp"]))

"""The SMART Backend Services endpoints: ``POST /auth/token``, ``GET /auth/jwks`` and
``GET [/fhir]/.well-known/smart-configuration``; plus the CapabilityStatement's
``rest.security`` (``capability_security``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.security.principal import GATEWAY_SCOPES, Principal
from gateway.security.tokens import ASSERTION_ALGORITHMS, OAuthError, TokenService

log = logging.getLogger(__name__)

TOKEN_PATH = "/auth/token"  # noqa: S105 (a path, not a secret)
JWKS_PATH = "/auth/jwks"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def server_root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def smart_configuration(root: str) -> dict[str, Any]:
    return {
        "token_endpoint": root + TOKEN_PATH,
        "jwks_uri": root + JWKS_PATH,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "scopes_supported": ["system/*.cruds", "system/*.rs", *sorted(GATEWAY_SCOPES)],
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
    }


def capability_security(*, secured: bool) -> Callable[[str], dict[str, Any]]:
    """``rest.security`` of the CapabilityStatement, from the FHIR base URL."""

    def security(base: str) -> dict[str, Any]:
        if not secured:
            return {"cors": False, "description": "INSECURE: this gateway serves without "
                    "authentication (loopback demo or --insecure-no-auth)."}
        root = base.removesuffix("/fhir")
        return {"cors": False,
                "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                             "text": "SMART Backend Services (client-confidential-asymmetric)"}],
                "extension": [{"url": OAUTH_URIS, "extension": [
                    {"url": "token", "valueUri": root + TOKEN_PATH}]}],
                "description": "Every request needs a bearer access token from "
                f"{root + TOKEN_PATH} (SMART v2 system scopes)."}

    return security


def auth_router(tokens: TokenService | None,
                root: Callable[[], str] | None = None) -> APIRouter:
    """``root``: the public address (``--public-url``) that clients put in ``aud``; without
    one (tests, benchmarks) the request's own."""
    router = APIRouter(tags=["auth"])

    def here(request: Request) -> str:
        return root() if root is not None else server_root(request)

    @router.get("/.well-known/smart-configuration", summary="SMART configuration")
    @router.get("/fhir/.well-known/smart-configuration", summary="SMART configuration")
    async def configuration(request: Request) -> JSONResponse:
        return JSONResponse(smart_configuration(here(request)))

    @router.get(JWKS_PATH, summary="The public keys that sign this gateway's access tokens")
    async def jwks() -> JSONResponse:
        keys = [tokens.jwk] if tokens is not None else []
        return JSONResponse({"keys": keys})

    @router.post(TOKEN_PATH, summary="SMART Backend Services token endpoint (client_credentials)")
    async def token(request: Request) -> JSONResponse:
        if tokens is None:
            return _oauth_error(OAuthError("invalid_request", "this gateway has no clients "
                                           "file: it issues no tokens (--clients)"))
        if request.headers.get("content-type", "").split(";")[0].strip() != \
                "application/x-www-form-urlencoded":
            return _oauth_error(OAuthError(
                "invalid_request", "the body must be application/x-www-form-urlencoded"))
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        request.state.audit = {"subtype": "token", "entity": [], "query": ""}
        try:
            client_id, answer = await run_in_threadpool(tokens.token, fields,
                                                        here(request) + TOKEN_PATH)
        except OAuthError as exc:
            # the audit trail's "who" of a refused request: the client it claims to be
            request.state.audit["agent"] = tokens.claimed_client(fields)
            log.info("token refused: %s: %s", exc.error, exc.description)
            return _oauth_error(exc)
        # the audit trail's "who" of an issued token
        request.state.principal = Principal(client_id, frozenset(answer["scope"].split()))
        return JSONResponse(answer, headers=NO_STORE)

    return router


def _oauth_error(exc: OAuthError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=NO_STORE)

"""Trust-boundary settings of ``gateway serve`` and the secure-by-default start check.

With ``--clients`` every request needs a token. Without it the gateway serves anonymously
only when it listens on loopback; on any other address it refuses to start unless
``--insecure-no-auth`` is given, which it then announces at every start, on ``/healthz``
and in the CapabilityStatement.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gateway.errors import ConfigError

log = logging.getLogger("gateway")


class AuthSettings(BaseModel):
    clients: Path | None = Field(None, description="clients file (YAML): every request then "
                                 "needs a SMART Backend Services token")
    oidc_issuer: str | None = Field(None, description="also trust access tokens of this "
                                    "OpenID Connect issuer (by its JWKS)")
    oidc_audience: str | None = Field(None, description="the aud an OIDC issuer's tokens must "
                                      "carry (default: not checked)")
    oidc_console_client_id: str | None = Field(None, description="the web console's client "
                                               "id at the OIDC issuer (people log in with "
                                               "the authorization-code flow and PKCE)")
    insecure_no_auth: bool = Field(False, description="serve without authentication on a "
                                   "non-loopback address (announced everywhere)")
    cors_origin: list[str] = Field(default_factory=list, description="allowed CORS origin "
                                   "(repeatable; default: CORS off)")
    mllp_require_client_cert: bool = Field(False, description="MLLP: a client certificate is "
                                           "required and must be a sender of MSH-4's site")

    def mode(self, host: str) -> str:
        """``tokens``, ``anonymous-loopback`` or ``insecure``; ConfigError when refused."""
        if self.clients is not None:
            return "tokens"
        if self.oidc_issuer:
            raise ConfigError("--oidc-issuer needs --clients (the clients its tokens name)")
        if is_loopback(host):
            return "anonymous-loopback"
        if self.insecure_no_auth:
            return "insecure"
        raise ConfigError(f"listening on {host} without --clients: refusing to serve the "
                          "API unauthenticated beyond loopback (give --clients FILE, or "
                          "--insecure-no-auth to accept the risk)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trust boundary")
    fields = AuthSettings.model_fields
    group.add_argument("--clients", type=Path, default=None,
                       help=f"{fields['clients'].description} [GATEWAY_CLIENTS]")
    for name in ("oidc_issuer", "oidc_audience", "oidc_console_client_id"):
        group.add_argument("--" + name.replace("_", "-"), default=None,
                           help=f"{fields[name].description} [GATEWAY_{name.upper()}]")
    for name in ("insecure_no_auth", "mllp_require_client_cert"):
        group.add_argument("--" + name.replace("_", "-"), action="store_true", default=None,
                           help=f"{fields[name].description} [GATEWAY_{name.upper()}=1]")
    group.add_argument("--cors-origin", action="append", default=None,
                       help=f"{fields['cors_origin'].description} [GATEWAY_CORS_ORIGIN, "
                       "comma-separated]")


def from_sources(args: argparse.Namespace | None, env: dict[str, str]) -> AuthSettings:
    values: dict[str, Any] = {}
    for name in AuthSettings.model_fields:
        raw = env.get("GATEWAY_" + name.upper())
        if raw not in (None, ""):
            values[name] = [o.strip() for o in raw.split(",") if o.strip()] \
                if name == "cors_origin" else raw
        given = getattr(args, name, None) if args is not None else None
        if given is not None:
            values[name] = given
    return AuthSettings.model_validate(values)

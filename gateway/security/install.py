"""Wire the trust boundary into one running gateway: the clients file, the token service
(with an optional OIDC issuer), the middleware, CORS and the start banner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway.adapters.loader import Network
from gateway.errors import ConfigError
from gateway.security.clients import load_access
from gateway.security.keys import signing_key
from gateway.security.middleware import AuthMiddleware
from gateway.security.oidc import OidcIssuer
from gateway.security.routes import capability_security
from gateway.security.settings import AuthSettings
from gateway.security.tokens import TokenService
from gateway.security.users import User

log = logging.getLogger("gateway")


@dataclass
class Auth:
    settings: AuthSettings
    mode: str  # tokens | anonymous-loopback | insecure
    tokens: TokenService | None = None
    users: dict[str, User] = field(default_factory=dict)  # the web console's people
    oidc: OidcIssuer | None = None

    def capability_security(self) -> Callable[[str], dict[str, Any]]:
        return capability_security(secured=self.tokens is not None)

    def install(self, app: FastAPI) -> None:
        app.add_middleware(AuthMiddleware, tokens=self.tokens)
        if self.settings.cors_origin:  # outermost: preflights carry no token
            app.add_middleware(CORSMiddleware, allow_origins=self.settings.cors_origin,
                               allow_methods=["GET", "POST", "PUT", "DELETE"],
                               allow_headers=["Authorization", "Content-Type", "If-Match",
                                              "If-None-Exist", "Prefer"],
                               expose_headers=["Location", "ETag", "Last-Modified",
                                               "Content-Location"])

    def announce(self, host: str) -> None:
        if self.mode == "tokens":
            assert self.tokens is not None
            log.info("authentication on: %d clients (SMART Backend Services tokens)",
                     len(self.tokens.clients))
        elif self.mode == "anonymous-loopback":
            log.warning("no clients file: serving ANONYMOUSLY, on loopback (%s) only", host)
        else:
            log.warning("INSECURE: --insecure-no-auth: serving WITHOUT AUTHENTICATION on %s",
                        host)

    def reload_clients(self, network: Network) -> None:
        """SIGHUP: re-read the clients file; a broken one keeps the running clients."""
        if self.tokens is None or self.settings.clients is None:
            return
        try:
            self.tokens.clients, self.users = load_access(self.settings.clients, network)
        except ConfigError as exc:
            log.error("clients file not reloaded, keeping the running clients: %s", exc)


def build_auth(settings: AuthSettings, host: str, network: Network, data_dir: Path) -> Auth:
    """The trust boundary of one gateway (ConfigError: refuse to start)."""
    mode = settings.mode(host)
    if mode != "tokens":
        return Auth(settings, mode)
    assert settings.clients is not None
    clients, users = load_access(settings.clients, network)
    external = None
    if settings.oidc_issuer:
        external = OidcIssuer(settings.oidc_issuer, settings.oidc_audience)
        external.discover()
    tokens = TokenService(clients, signing_key(data_dir), external=external)
    return Auth(settings, mode, tokens, users, external)

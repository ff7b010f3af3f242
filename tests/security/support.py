"""Helpers of the trust-boundary tests: real keys, a clients file, a running gateway with
it, client assertions (good and bad) and tokens."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.runtime import Gateway
from gateway.security import keys
from gateway.security.clients import add_client
from gateway.security.settings import AuthSettings
from gateway.security.tokens import ASSERTION_TYPE

STUDY = "carcik-cd19"  # a study of the shipped studies.yaml


@dataclass
class ApiClient:
    id: str
    scopes: list[str]
    studies: list[str] | None = None
    sites: list[str] | None = None
    alg: str = "ES384"
    key: Any = field(default=None)

    def __post_init__(self) -> None:
        self.key = self.key or keys.generate(self.alg)

    @property
    def kid(self) -> str:
        return str(keys.public_jwk(self.key)["kid"])


def write_clients(path: Path, *clients: ApiClient) -> Path:
    for c in clients:
        entry: dict[str, Any] = {"id": c.id, "name": f"test client {c.id}",
                                 "jwks": {"keys": [keys.public_jwk(c.key)]}, "scopes": c.scopes}
        if c.studies is not None:
            entry["studies"] = c.studies
        if c.sites is not None:
            entry["sites"] = c.sites
        add_client(path, entry)
    return path


async def start(tmp_path: Path, clients: Path | None = None, database_url: str | None = None,
                **auth: Any) -> Gateway:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=database_url, sites=EXAMPLE_SITES,
                        bus=BusSettings(node_id="test-node"),
                        auth=AuthSettings(clients=clients, **auth))
    gateway = Gateway(settings)
    try:
        await gateway.start()
    except BaseException:
        await gateway.stop()
        raise
    return gateway


def assertion(client: ApiClient, aud: str, *, key: Any = None, alg: str | None = None,
              headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": client.id, "sub": client.id, "aud": aud, "iat": now, "exp": now + 240,
            "jti": uuid.uuid4().hex, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key or client.key, algorithm=alg or client.alg,
                      headers={"kid": client.kid, **(headers or {})})


def token_form(signed: str, scope: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed, "scope": scope}


async def get_token(base: str, client: ApiClient, scope: str | None = None) -> str:
    url = f"{base}/auth/token"
    async with httpx.AsyncClient() as http:
        r = await http.post(url, data=token_form(assertion(client, url),
                                                 scope or " ".join(client.scopes)))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

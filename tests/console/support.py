"""Helpers of the console tests: a running gateway (anonymous on loopback, or with a
clients file whose ``users:`` log in), a browser-like HTTP client that keeps the session
cookie, and the CSRF token of a page."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.runtime import Gateway
from gateway.security.users import hash_password
from tests.security.support import start

PASSWORD = "correct horse battery staple"  # noqa: S105 - the test users' password
ADMIN_USER = {"id": "anna", "name": "Anna (integration team)",
              "scopes": ["system/gateway.admin", "system/gateway.raw",
                         "system/ResearchStudy.rs", "system/ResearchSubject.rs"]}
READER_USER = {"id": "rita", "name": "Rita (study monitor)",
               "scopes": ["system/ResearchStudy.rs", "system/ResearchSubject.rs"],
               "studies": ["carcik-cd19"]}
OIDC_USER = {"id": "olga", "name": "Olga (through the IdP)", "oidc_subject": "olga-sub-1",
             "scopes": ["system/gateway.admin"]}
_HASH = hash_password(PASSWORD)


def write_users(path: Path, *users: dict[str, Any]) -> Path:
    entries = [{**u, "password": _HASH} if "oidc_subject" not in u else dict(u)
               for u in users]
    path.write_text(yaml.safe_dump({"clients": [], "users": entries}), encoding="utf-8")
    return path


async def secured(tmp_path: Path, database_url: str | None = None, **auth: Any) -> Gateway:
    clients = write_users(tmp_path / "clients.yaml", ADMIN_USER, READER_USER, OIDC_USER)
    return await start(tmp_path, clients, database_url, **auth)


def browser(gw: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}", timeout=30)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def log_in(http: httpx.AsyncClient, user: str, password: str = PASSWORD
                 ) -> httpx.Response:
    form = await http.get("/console/login")
    return await http.post("/console/login", data={"csrf": csrf_of(form), "username": user,
                                                   "password": password, "next": "/console"})


def text_of(page: httpx.Response) -> str:
    """The visible text (tags and SVG dropped), for assertions on what a person reads."""
    body = re.sub(r"<svg.*?</svg>", " ", page.text, flags=re.S)
    body = re.sub(r"<script.*?</script>", " ", body, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))

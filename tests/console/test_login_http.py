"""People log in to the console of a gateway with a clients file: local accounts (scrypt
hashes in ``users:``), session cookies (HttpOnly, SameSite, not Secure on loopback), CSRF
on every form, the user's scopes and study restriction, logout, the audit trail's agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.console.session import COOKIE
from gateway.runtime import Gateway
from gateway.security.settings import AuthSettings
from gateway.store.audit import AuditLog
from tests.console.support import (
    ADMIN_USER,
    browser,
    csrf_of,
    log_in,
    secured,
    text_of,
    write_users,
)
from tests.console.traffic import send_traffic


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await secured(tmp_path)
    yield gw
    await gw.stop()


async def test_without_a_session_every_page_sends_the_browser_to_the_login(
        gateway: Gateway) -> None:
    async with browser(gateway) as http:
        for path in ("/console", "/console/messages?site=hpg23", "/console/studies",
                     "/console/messages/1/raw"):
            answer = await http.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/console/login?next=%2Fconsole")
        login = await http.get("/console/login")
    assert login.status_code == 200 and "anonymous mode" not in text_of(login)


async def test_a_wrong_password_is_refused_and_the_right_one_opens_a_new_session(
        gateway: Gateway) -> None:
    async with browser(gateway) as http:
        wrong = await log_in(http, "anna", "not her password")
        nobody = await log_in(http, "nobody", "whatever it is")
        before = http.cookies[COOKIE]
        right = await log_in(http, "anna")
        after = http.cookies[COOKIE]
        network = await http.get("/console")
    assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
    assert nobody.status_code == 401 and "wrong user name or password" in nobody.text
    assert right.status_code == 303 and right.headers["location"] == "/console"
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # loopback: plain HTTP
    assert after != before  # a new session id at login (no fixation)
    assert network.status_code == 200 and "anna" in text_of(network)


async def test_a_form_without_its_csrf_token_is_refused_403(gateway: Gateway) -> None:
    async with browser(gateway) as http:
        await http.get("/console/login")
        login = await http.post("/console/login", data={"username": "anna",
                                                        "password": "x" * 12})
        await log_in(http, "anna")
        replay = await http.post("/console/replay", data={"ids": "1", "confirm": "yes"})
        forged = await http.post("/console/replay", data={"ids": "1", "confirm": "yes",
                                                          "csrf": "not-the-token"})
        logout = await http.post("/console/logout", data={})
        still = await http.get("/console")
    assert login.status_code == 403
    assert replay.status_code == 403 and forged.status_code == 403
    assert logout.status_code == 403 and still.status_code == 200


async def test_a_user_without_the_scope_of_a_page_is_refused_and_sees_only_their_study(
        gateway: Gateway) -> None:
    await send_traffic(gateway, rounds=1)
    async with browser(gateway) as http:
        assert (await log_in(http, "rita")).status_code == 303
        network = await http.get("/console")
        raw = await http.get("/console/messages/1/raw")
        studies = await http.get("/console/studies")
    assert network.status_code == 403 and "system/gateway.admin" in network.text
    assert raw.status_code == 403 and "system/gateway.raw" in raw.text
    assert studies.status_code == 200
    text = text_of(studies)
    assert "CARCIK-CD19" in text  # rita's study
    assert "large B-cell lymphoma" not in text  # another study, not hers


async def test_logout_forgets_the_session(gateway: Gateway) -> None:
    async with browser(gateway) as http:
        await log_in(http, "anna")
        page = await http.get("/console/bus")
        cookie = http.cookies[COOKIE]
        out = await http.post("/console/logout", data={"csrf": csrf_of(page)})
        http.cookies.set(COOKIE, cookie, domain="127.0.0.1", path="/console")  # replayed
        again = await http.get("/console/bus")
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert again.status_code == 303  # the old cookie names no session any more


async def test_console_requests_are_audited_with_the_user_as_the_agent(
        gateway: Gateway) -> None:
    async with browser(gateway) as http:
        await http.get("/console")  # not logged in
        await log_in(http, "anna")
        await http.get("/console/messages", params={"control_id": "MRN-LIKE-123"})
    assert gateway.audit is not None and gateway.store is not None
    await asyncio.to_thread(gateway.audit.flush)
    events = [orjson.loads(row.content) for row in AuditLog(gateway.store).walk()]
    agents = [e["agent"][0]["who"]["identifier"]["value"] for e in events]
    # the redirect to the login, the login page, the login post: nobody yet; then anna
    assert agents[0] == "unauthenticated" and agents[-1] == "user:anna"
    assert set(agents) == {"unauthenticated", "user:anna"}
    assert all(b"MRN-LIKE-123" not in row.content for row in AuditLog(gateway.store).walk())


async def test_beyond_loopback_the_session_cookie_is_secure(tmp_path: Path) -> None:
    clients = write_users(tmp_path / "clients.yaml", ADMIN_USER)
    gw = Gateway(Settings(host="0.0.0.0", http_port=0, mllp_port=0, data_dir=tmp_path / "v",
                          sites=EXAMPLE_SITES, bus=BusSettings(node_id="test-node"),
                          public_url="http://gateway.test", auth=AuthSettings(clients=clients)))
    await gw.start()
    try:
        async with browser(gw) as http:
            page = await http.get("/console/login")
    finally:
        await gw.stop()
    cookie = page.headers["set-cookie"].lower()
    assert "; secure" in cookie and "httponly" in cookie

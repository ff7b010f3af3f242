"""The console in a real headless browser: Debian's Chromium (/usr/bin/chromium, installed
by ``make test``) driven by Playwright, against a running gateway after real traffic.

Each page loads with no console error (nor page error, nor failed request); the message
browser filters and pages; replay works from the page; login, logout and CSRF work; a user
without rights is refused. Screenshots of each page go to ``var/screenshots`` (gitignored;
the copies in docs/img are taken from there)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from gateway.runtime import Gateway
from tests.console.support import PASSWORD, secured
from tests.console.traffic import send_traffic
from tests.test_runtime import start_gateway

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
# as root, in a closed network: no sandbox, and none of Chromium's own background traffic
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    assert HAVE_CHROMIUM, "Debian's chromium is missing: make test installs it"
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                               headless=True)
        yield browser
        await browser.close()


class Watched:
    """A page whose console errors, page errors and failed requests are collected."""

    def __init__(self, page: Page, base: str) -> None:
        self.page, self.base, self.errors = page, base, []  # type: ignore[var-annotated]
        page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))

    async def open(self, path: str, shot: str | None = None) -> Any:
        answer = await self.page.goto(self.base + path)
        if shot:
            SHOTS.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
        return answer


@pytest.fixture
async def anonymous(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path)
    await send_traffic(gw)
    yield gw
    await gw.stop()


async def _watched(chromium: Browser, gw: Gateway) -> Watched:
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    return Watched(await context.new_page(), f"http://127.0.0.1:{gw.http_port}")


async def test_each_page_loads_without_a_console_error(anonymous: Gateway,
                                                       chromium: Browser) -> None:
    w = await _watched(chromium, anonymous)
    for path, shot in [("/console", "network"), ("/console/messages", "messages"),
                       ("/console/unmapped", "unmapped"), ("/console/studies", "studies"),
                       ("/console/exports", "exports"), ("/console/bus", "bus")]:
        answer = await w.open(path, shot)
        assert answer.status == 200, path
        assert await w.page.locator("main h1").count() == 1
    await w.open("/console/messages?control_id=HPG23-C000")
    await w.page.locator("#messages tbody a").first.click()
    await w.page.wait_for_selector("#report")
    await w.page.screenshot(path=str(SHOTS / "message.png"), full_page=True)
    await w.page.click("#raw")
    await w.page.wait_for_selector("#raw-text")
    assert "PID|1||***" in await w.page.inner_text("#raw-text")
    await w.page.screenshot(path=str(SHOTS / "raw.png"), full_page=True)
    assert w.errors == []


async def test_the_message_browser_filters_and_pages(anonymous: Gateway,
                                                     chromium: Browser) -> None:
    w = await _watched(chromium, anonymous)
    await w.open("/console/messages")
    await w.page.select_option("select[name=site]", "hpg23")
    await w.page.click("#filters button[type=submit]")
    await w.page.wait_for_url("**site=hpg23**")
    sites = await w.page.locator("#messages tbody tr td:nth-child(3)").all_inner_texts()
    assert sites == ["hpg23"] * 4
    await w.open("/console/messages?limit=10")
    first = await w.page.locator("#messages tbody input[name=ids]").evaluate_all(
        "boxes => boxes.map(b => b.value)")
    await w.page.click("#next")
    await w.page.wait_for_url("**cursor=**")
    second = await w.page.locator("#messages tbody input[name=ids]").evaluate_all(
        "boxes => boxes.map(b => b.value)")
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    assert int(second[0]) < int(first[-1])  # older
    assert w.errors == []


async def test_replay_works_from_the_page(anonymous: Gateway, chromium: Browser) -> None:
    w = await _watched(chromium, anonymous)
    await w.open("/console/messages?status=error")
    await w.page.check("#messages tbody input[name=ids]")
    await w.page.click("#replay-selected")
    await w.page.wait_for_selector("#confirm-replay")
    await w.page.screenshot(path=str(SHOTS / "replay-confirm.png"), full_page=True)
    await w.page.click("#confirm-replay")
    await w.page.wait_for_selector("#outcomes")
    await w.page.screenshot(path=str(SHOTS / "replay-done.png"), full_page=True)
    row = await w.page.inner_text("#outcomes tbody tr")
    assert "BAD-1" in row and "AE" in row  # replayed, still not a number in OBX-5
    assert w.errors == []


@pytest.fixture
async def protected(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await secured(tmp_path)
    yield gw
    await gw.stop()


async def _log_in(w: Watched, user: str, password: str = PASSWORD) -> None:
    await w.page.fill("input[name=username]", user)
    await w.page.fill("input[name=password]", password)
    await w.page.click("#login button[type=submit]")
    await w.page.wait_for_load_state()


async def test_login_logout_csrf_and_a_user_without_rights(protected: Gateway,
                                                           chromium: Browser) -> None:
    w = await _watched(chromium, protected)
    await w.open("/console/bus")
    assert "/console/login" in w.page.url
    await w.page.screenshot(path=str(SHOTS / "login.png"), full_page=True)
    await _log_in(w, "anna", "not her password")
    assert "wrong user name or password" in await w.page.inner_text("main")
    await _log_in(w, "anna")
    assert w.page.url.endswith("/console/bus") and "anna" in await w.page.inner_text("header")
    # a forged form: the logout's CSRF token replaced
    await w.page.evaluate("document.querySelector('header input[name=csrf]').value = 'x'")
    await w.page.click("#logout")
    assert "CSRF" in await w.page.inner_text("main")
    await w.open("/console/bus")
    await w.page.click("#logout")
    await w.page.wait_for_url("**/console/login")
    assert "/console/login" in (await w.open("/console")).url  # logged out
    await _log_in(w, "rita")
    assert "system/gateway.admin" in await w.page.inner_text("main")  # 403: no admin scope
    await w.page.screenshot(path=str(SHOTS / "refused.png"), full_page=True)
    refusals = [e for e in w.errors if "403" in e]
    assert len(refusals) == 2  # the two 403 pages, which the browser reports as errors
    assert [e for e in w.errors if e not in refusals and "401" not in e] == []

"""The console over real HTTP in anonymous mode (no clients file, loopback), after real
traffic (every site's sample over MLLP, enrolments, an AE, an AR, a lab export), on SQLite
and PostgreSQL: what each page shows, the browser's filters and paging, a message's page
and raw text, replay with confirmation and CSRF."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.runtime import Gateway
from tests.console.support import browser, csrf_of, text_of
from tests.console.traffic import send_traffic
from tests.test_runtime import start_gateway

PAGES = ["/console", "/console/messages", "/console/unmapped", "/console/studies",
         "/console/exports", "/console/bus"]


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path, database_url)
    codes = await send_traffic(gw)
    assert codes.get("AE") == 1 and codes.get("AR") == 1
    yield gw
    await gw.stop()


def tile(page: httpx.Response, site: str) -> str:
    start = page.text.index(f'id="site-{site}"')
    return text_of(httpx.Response(200, text=page.text[start:page.text.index("</article>",
                                                                             start)]))


def message_ids(page: httpx.Response) -> list[int]:
    return [int(i) for i in re.findall(r'name="ids" value="(\d+)"', page.text)]


async def test_every_page_answers_in_anonymous_mode_and_says_so(gateway: Gateway) -> None:
    async with browser(gateway) as http:
        for path in PAGES:
            page = await http.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert "anonymous mode" in text_of(page), path
        css = await http.get("/console/static/console.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


async def test_a_site_tile_counts_its_messages_by_outcome_today_and_in_the_last_hour(
        gateway: Gateway) -> None:
    async with browser(gateway) as http:
        page = await http.get("/console")
    hpg23 = tile(page, "hpg23")  # three samples accepted, one AE (BAD-1)
    assert "today 3 1 0" in hpg23 and "last hour 3 1 0" in hpg23
    assert "error rate 25.0 %" in hpg23
    assert re.search(r"ACK p50 / p99 \d+ / \d+ ms", hpg23)
    assert "last message never" not in hpg23
    assert page.text.count('class="chart"') == 9  # a 24 h chart per site


async def test_the_message_browser_filters_by_site_status_type_and_control_id(
        gateway: Gateway) -> None:
    async with browser(gateway) as http:
        by_site = await http.get("/console/messages", params={"site": "hpg23"})
        errors = await http.get("/console/messages", params={"status": "error"})
        crm = await http.get("/console/messages", params={"type": "CRM"})
        one = await http.get("/console/messages", params={"control_id": "HSR-C001"})
        bad = await http.get("/console/messages", params={"since": "yesterday"})
    assert len(message_ids(by_site)) == 4
    assert by_site.text.count("<td>hpg23</td>") == 4
    assert len(message_ids(errors)) == 1 and "BAD-1" in errors.text
    assert len(message_ids(crm)) == 3
    assert len(message_ids(one)) == 1 and "HSR-C001" in one.text
    assert bad.status_code == 400 and "since: not a date" in bad.text


async def test_the_message_browser_pages_newest_first_without_repeats(
        gateway: Gateway) -> None:
    seen: list[int] = []
    async with browser(gateway) as http:
        page = await http.get("/console/messages", params={"limit": 10})
        while True:
            seen += message_ids(page)
            link = re.search(r'id="next" href="([^"]+)"', page.text)
            if link is None:
                break
            page = await http.get(link.group(1).replace("&amp;", "&"))
    assert len(seen) == len(set(seen)) == 27 + 3 + 2 + 1  # samples, CRM, AE, AR, lab export
    assert seen == sorted(seen, reverse=True)  # newest first (ids grow with time here)


async def test_a_message_page_shows_its_report_ack_and_resources_linking_to_fhir(
        gateway: Gateway) -> None:
    async with browser(gateway) as http:
        listed = await http.get("/console/messages", params={"control_id": "HPG23-C000"})
        [message_id] = message_ids(listed)
        page = await http.get(f"/console/messages/{message_id}")
        missing = await http.get("/console/messages/999999")
    text = text_of(page)
    assert page.status_code == 200
    assert "code-invalid OBX[11]-3" in text  # the unmapped local code
    assert "MSA|" in text  # the ACK as sent
    assert re.search(r'href="/fhir/Observation/[^"/]+/_history/1"', page.text)
    assert "Sample" not in text  # no patient name on the page
    assert missing.status_code == 404


async def test_the_raw_message_shows_pid_masked_unless_asked_for(gateway: Gateway) -> None:
    async with browser(gateway) as http:
        [message_id] = message_ids(await http.get("/console/messages",
                                                  params={"control_id": "HPG23-C000"}))
        masked = text_of(await http.get(f"/console/messages/{message_id}/raw"))
        unmasked = text_of(await http.get(f"/console/messages/{message_id}/raw",
                                          params={"unmasked": "true"}))
        api = await http.get(f"/admin/messages/{message_id}/raw")
    assert "PID|1||***||***||***|***" in masked and "Sample^Patient" not in masked
    assert "OBX|1|NM|PCR^crp^L" in masked  # the rest as sent
    assert "Sample^Patient" in unmasked and "7001234" in unmasked
    assert api.status_code == 200 and "Sample^Patient" not in api.text


async def test_replay_asks_for_confirmation_and_shows_the_outcome(gateway: Gateway) -> None:
    async with browser(gateway) as http:
        listed = await http.get("/console/messages", params={"status": "error"})
        [message_id] = message_ids(listed)
        forged = await http.post("/console/replay", data={"ids": str(message_id)})
        confirm = await http.post("/console/replay", data={"ids": str(message_id),
                                                           "csrf": csrf_of(listed)})
        done = await http.post("/console/replay", data={"ids": str(message_id),
                                                        "csrf": csrf_of(confirm),
                                                        "confirm": "yes"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert confirm.status_code == 200 and "Replay 1 message?" in text_of(confirm)
    assert done.status_code == 200
    assert re.search(rf">{message_id}</a></td><td>BAD-1</td><td>error</td><td>AE<", done.text)


async def test_the_unmapped_codes_page_gives_counts_and_the_code_map_line(
        gateway: Gateway) -> None:
    async with browser(gateway) as http:
        page = await http.get("/console/unmapped")
    section = page.text[page.text.index('id="unmapped-hpg23"'):]
    section = text_of(httpx.Response(200, text=section[:section.index("</section>")]))
    assert "NOTMAPPED9 L hl7 3" in section
    assert '"NOTMAPPED9": {system: "http://loinc.org", code: "<LOINC code>"' in section


async def test_the_studies_exports_and_bus_pages_show_what_was_received(
        gateway: Gateway) -> None:
    async with browser(gateway) as http:
        studies = text_of(await http.get("/console/studies"))
        exports = text_of(await http.get("/console/exports"))
        bus = text_of(await http.get("/console/bus"))
    # the three CRM^C01 of San Raffaele enrol three subjects in the CAR-T lymphoma study
    lymphoma = studies[studies.index("large B-cell lymphoma"):][:400]
    assert re.search(r"\d+ subjects · \d+ on study · 0 off study", lymphoma)
    assert "hsr" in lymphoma
    assert "qc-export.csv: 3 of 3 rows accepted" in exports
    assert "outbox depth" in bus and "broker reachable" in bus

"""Bounded searches through a real server (uvicorn on a free port), on both databases:
the time budget answers 503 with a precise outcome while reads stay fast, the client
going away cancels the query, limits answer 400 (never "503 transient database error"),
and a graceful stop cancels what runs."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlencode

import httpx
import pytest

from gateway.api.fhir.budgets import RequestBudgets
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.errors import StoreError
from gateway.runtime import Gateway
from gateway.store.sql import SqlStore
from tests.api.conftest import serving
from tests.limits.heavy import form, heavy_params


def test_a_search_beyond_the_time_budget_is_answered_503_with_a_timeout_outcome(
        loaded: SqlStore, caplog: pytest.LogCaptureFixture) -> None:
    budgets = RequestBudgets(0.02)
    with serving(loaded, budgets=budgets) as served, served.client() as http:
        start = time.monotonic()
        response = http.post("/Observation/_search", **form(heavy_params()))
        elapsed = time.monotonic() - start
    assert response.status_code == 503
    issue = response.json()["issue"][0]
    assert issue["code"] == "timeout"
    assert issue["diagnostics"] == ("the query did not finish within the request time "
                                    "budget of 0.02 s and was cancelled in the database")
    assert elapsed < 1.0, elapsed
    assert budgets.cancelled["budget"] == 1 and not budgets.running
    assert any("query cancelled (budget)" in r.getMessage() for r in caplog.records)


def test_reads_answer_fast_while_heavy_searches_run_out_their_budget(loaded: SqlStore) -> None:
    budgets = RequestBudgets(0.5)
    with serving(loaded, budgets=budgets) as served:
        answers: list[tuple[int, float]] = []

        def heavy() -> None:
            with served.client() as http:
                start = time.monotonic()
                status = http.post("/Observation/_search", **form(heavy_params())).status_code
                answers.append((status, time.monotonic() - start))

        threads = [threading.Thread(target=heavy) for _ in range(3)]
        for thread in threads:
            thread.start()
        reads: list[float] = []
        with served.client() as http:
            while any(t.is_alive() for t in threads):
                start = time.monotonic()
                assert http.get("/Observation/obs-1").status_code == 200
                reads.append(time.monotonic() - start)
                time.sleep(0.02)
        for thread in threads:
            thread.join()
    assert reads and max(reads) < 0.5, reads
    assert all(status in (200, 503) and took < 0.5 + 1.0 for status, took in answers), answers


def test_a_search_is_cancelled_in_the_database_when_the_client_goes_away(
        loaded: SqlStore) -> None:
    budgets = RequestBudgets(60)
    with serving(loaded, budgets=budgets) as served:
        port = int(served.url.rsplit(":", 1)[1])
        body = urlencode(heavy_params()).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /fhir/Observation/_search HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            deadline = time.monotonic() + 5
            while not budgets.running and time.monotonic() < deadline:
                time.sleep(0.002)  # the search has started: now the client goes away
        deadline = time.monotonic() + 5
        while budgets.cancelled["disconnect"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert budgets.cancelled["disconnect"] == 1
        assert budgets.cancelled["budget"] == 0
        while budgets.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not budgets.running


REPRODUCTIONS = [
    ("a token with 998 values", {"code": ",".join(f"c{i}" for i in range(998))},
     "998 values; at most 100"),
    ("a chain of 50 links", {"subject" + ".link" * 49 + ".name": "x"}, "a chain of 51"),
    ("20 nested _has", {"_has:Observation:subject:" * 20 + "code": "x"}, "20 nested _has"),
    ("500 sort keys", {"_sort": ",".join(["-date"] * 500)}, "500 sort keys"),
    ("the same sort key twice", {"_sort": "-date,-date", "_count": "10"}, "given twice"),
]


@pytest.mark.parametrize(("case", "params", "says"), REPRODUCTIONS,
                         ids=[r[0] for r in REPRODUCTIONS])
def test_a_search_beyond_a_limit_is_answered_400_too_costly_at_once(
        loaded: SqlStore, case: str, params: dict[str, str], says: str) -> None:
    with serving(loaded) as served, served.client() as http:
        start = time.monotonic()
        response = http.post("/Observation/_search", data=params)
        elapsed = time.monotonic() - start
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "too-costly" and says in issue["diagnostics"]
    assert elapsed < 1.0


async def test_a_graceful_stop_cancels_a_running_search_and_ends_within_its_deadline(
        loaded: SqlStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.runtime")
    settings = Settings(http_port=0, mllp_port=0, role="hub", data_dir=tmp_path / "var",
                        database_url=loaded.url, request_time_budget=60,
                        bus=BusSettings(node_id="test-node"))
    gateway = Gateway(settings)
    await gateway.start()
    assert gateway.budgets.seconds == 60
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}/fhir",
                                 timeout=30) as http:
        search = asyncio.ensure_future(http.post("/Observation/_search",
                                                 **form(heavy_params())))
        for _ in range(1000):  # until the search runs in the database
            if gateway.budgets.running:
                break
            await asyncio.sleep(0.005)
        start = time.monotonic()
        await gateway.stop()
        stopped = time.monotonic() - start
        response = await search
    assert stopped < 3, stopped
    assert response.status_code == 503
    assert "the gateway is stopping" in response.json()["issue"][0]["diagnostics"]
    assert any("running queries cancelled" in r.getMessage() for r in caplog.records)


def test_a_search_inside_a_batch_has_a_budget_of_its_own(loaded: SqlStore) -> None:
    query = urlencode(heavy_params())
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation?{query}"}},
        {"request": {"method": "GET", "url": "Observation/obs-1"}}]}  # not a search: no budget
    with serving(loaded, budgets=RequestBudgets(0.02)) as served, served.client() as http:
        start = time.monotonic()
        response = http.post("", json=bundle)
        elapsed = time.monotonic() - start
    assert response.status_code == 200, response.text
    heavy, light = response.json()["entry"]
    assert heavy["response"]["status"].startswith("503")
    outcome = heavy["response"]["outcome"]["issue"][0]
    assert outcome["code"] == "timeout" and "time budget of 0.02 s" in outcome["diagnostics"]
    assert light["response"]["status"] == "200 OK"
    assert elapsed < 2.0


def test_every_5xx_answer_leaves_a_log_line(sqlite_url: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    class Broken(SqlStore):
        def search(self, *args: object, **kwargs: object) -> NoReturn:
            raise StoreError("database error: OperationalError")

    store = Broken(sqlite_url)
    store.migrate()
    try:
        with serving(store) as served, served.client() as http:
            response = http.get("/Observation", params={"code": "718-7"})
    finally:
        store.close()
    assert response.status_code == 503
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "GET /fhir/Observation answered 503: database error: OperationalError" in lines

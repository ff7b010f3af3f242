"""Paging while another client writes: the pages hold every pre-existing match once."""

from __future__ import annotations

import threading
import uuid

import httpx

from .conftest import FHIR_JSON, Served


def observation(code: str) -> dict:
    return {"resourceType": "Observation", "id": uuid.uuid4().hex, "status": "final",
            "code": {"coding": [{"system": "urn:test:paging", "code": code}]}}


def load(base: str, resources: list[dict]) -> None:
    body = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"Observation/{r['id']}"}}
        for r in resources]}
    answer = httpx.post(base, json=body, headers={"Content-Type": FHIR_JSON}, timeout=60)
    assert answer.status_code == 200


def test_paging_while_writing_neither_skips_nor_repeats_existing_matches(
        fhir_server: Served):
    code = uuid.uuid4().hex[:8]
    before = [observation(code) for _ in range(40)]
    load(fhir_server.base, before)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            load(fhir_server.base, [observation(code) for _ in range(3)])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen: list[str] = []
        url: str | None = f"{fhir_server.base}/Observation?code=urn:test:paging|{code}&_count=6"
        with httpx.Client(timeout=30) as http:
            while url:
                page = http.get(url).json()
                seen += [e["resource"]["id"] for e in page["entry"]]
                url = next((lnk["url"] for lnk in page["link"] if lnk["relation"] == "next"),
                           None)
    finally:
        stop.set()
        thread.join()
    assert len(seen) == len(set(seen)), "a resource came twice"
    assert {r["id"] for r in before} <= set(seen), "a pre-existing match was skipped"

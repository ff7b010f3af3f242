"""The example views of docs/research-data.md (their JSON in docs/views/) run through a real
server over the example sites' own sample messages, on SQLite and PostgreSQL: each view is
accepted, gives the rows it promises, and the sample output printed in the docs is what it
really gives (the first rows of its CSV), so the docs cannot rot."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gateway.adapters.loader import load_network
from gateway.ingest import IngestService, Job, Outcome
from gateway.store.sql import SqlStore
from tests.api.conftest import open_store
from tests.api.views_support import ViewServer, run_body, view_server

ROOT = Path(__file__).parents[2]
VIEWS = ROOT / "docs" / "views"
DOC = ROOT / "docs" / "research-data.md"
SAMPLES = sorted((ROOT / "gateway" / "sites" / "samples").glob("*/release-or-monitoring.hl7"))
KEY = b"k" * 32  # the network key the docs' sample output was made with
SAMPLE_BLOCK = re.compile(r"<!-- sample: ([\w-]+) -->\n```csv\n(.*?)```", re.S)


@pytest.fixture
def server(database_url: str) -> Iterator[ViewServer]:
    store = open_store(database_url)
    try:
        ingest(store)
        with view_server(store) as served:
            yield served
    finally:
        store.close()


def ingest(store: SqlStore) -> None:
    service = IngestService(store, load_network(), KEY)
    out: list[Outcome] = []
    service._run_group([Job(p.read_bytes(), "mllp", out.append) for p in SAMPLES])
    assert [o.status for o in out] == ["processed"] * len(SAMPLES)


def run_csv(server: ViewServer, name: str) -> list[list[str]]:
    view = orjson.loads((VIEWS / f"{name}.json").read_bytes())
    with server.client() as http:
        answer = http.post("/$viewdefinition-run", json=run_body(view, _format="csv"))
    assert answer.status_code == 200, answer.text
    return list(csv.reader(io.StringIO(answer.text)))


def test_every_view_of_the_docs_runs_and_the_docs_show_its_real_output(
        server: ViewServer) -> None:
    samples = dict(SAMPLE_BLOCK.findall(DOC.read_text()))
    names = sorted(p.stem for p in VIEWS.glob("*.json"))
    assert set(samples) == set(names), "every view in docs/views has its sample in the docs"
    for name in names:
        table = run_csv(server, name)
        shown = list(csv.reader(io.StringIO(samples[name])))
        assert len(table) > len(shown) - 1 >= 2, name
        assert table[:len(shown)] == shown, name


def test_the_release_view_gives_product_results_and_the_monitoring_view_the_rest(
        server: ViewServer) -> None:
    release, monitoring = run_csv(server, "release-results"), run_csv(server, "monitoring-results")
    head, rows = release[0], release[1:]
    assert all(r[head.index("test")].startswith("product-") for r in rows)
    assert all(r[head.index("product_id")] and r[head.index("study_id")] for r in rows)
    head_m, rows_m = monitoring[0], monitoring[1:]
    assert not any(r[head_m.index("code")].startswith("product-") for r in rows_m)
    assert all(r[head_m.index("patient_id")] for r in rows_m)
    observations = server.store.search("Observation", [("_count", "1000")]).resources
    assert len(rows) + len(rows_m) == len(observations)


def test_the_enrolment_view_names_every_research_subject_with_its_site_and_study(
        server: ViewServer) -> None:
    enrolment, sites = run_csv(server, "enrolment"), run_csv(server, "sites")
    head, rows = enrolment[0], enrolment[1:]
    subjects = server.store.search("ResearchSubject", [("_count", "1000")]).resources
    assert {r[head.index("research_subject_id")] for r in rows} == {s["id"] for s in subjects}
    site_ids = {r[0] for r in sites[1:]}
    assert all(r[head.index("site_id")] in site_ids and r[head.index("study_id")]
               for r in rows)


def test_a_view_asking_for_identity_finds_none_in_the_ingested_data(
        server: ViewServer) -> None:
    """The samples carry names, addresses, phones, full birth dates: a view cannot take
    out what the edge never stored (pseudonymised Patients, birth year only)."""
    view = {"resourceType": "ViewDefinition", "resource": "Patient", "select": [{"column": [
        {"name": "names", "path": "name.family | name.given", "collection": True},
        {"name": "contact", "path": "telecom.value | address.line", "collection": True},
        {"name": "birth", "path": "birthDate"},
        {"name": "identifiers", "path": "identifier.system", "collection": True}]}]}
    with server.client() as http:
        rows = http.post("/$viewdefinition-run",
                         json=run_body(view, _format="json")).json()
    assert rows and all(r["names"] == [] and r["contact"] == [] for r in rows)
    assert all(r["birth"] is None or len(r["birth"]) == 4 for r in rows)
    assert {s for r in rows for s in r["identifiers"]} == {"urn:plagencell:pseudonym:v1"}
